from django.urls import path

from django_project import views

urlpatterns = [
    path("hello/", views.hello),
    path("boom/", views.boom),
]
