from django.urls import path

from mysite import views

urlpatterns = [
    path("hello/", views.hello),
    path("boom/", views.boom),
]
