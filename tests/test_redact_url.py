"""Secrets in the endpoint URL and the token never show: not in ``repr``, warnings,
``stats()``, spill or dead-letter files, nor ``logship spill status`` (docs/security.md)."""

from __future__ import annotations

import pytest

from logship.pure.redact_url import redact_url, scrub, url_secrets


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://host:8080/app", "http://host:8080/app"),
        ("http://user:s3cr3t@host/app", "http://user:***@host/app"),
        ("https://t0k3n@host/app", "https://***@host/app"),
        ("http://u:p%40ss@h/", "http://u:***@h/"),
        ("http://h/x?api_key=K&stream=app", "http://h/x?api_key=***&stream=app"),
        (
            "https://h/x?token=a&Signature=b&sig=c&auth=d&secret=e&password=f&page=2",
            "https://h/x?token=***&Signature=***&sig=***&auth=***&secret=***&password=***&page=2",
        ),
        (
            "https://b.s3/o?X-Amz-Credential=c&X-Amz-Signature=s&X-Amz-Date=d",
            "https://b.s3/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=d",
        ),
        ("https://h/x?access_token=T#id_token=U", "https://h/x?access_token=***#id_token=***"),
        ("http://h/x?key", "http://h/x?key"),
        ("http://h/x?apiKey=&a=1;b=2", "http://h/x?apiKey=&a=1;b=2"),
        ("http://u:pw@[::1]:9/x?k=1", "http://u:***@[::1]:9/x?k=1"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


@pytest.mark.parametrize(
    "url", ["http://u:pw@[broken/x?token=t", "::::", "", "http://u:pw@h:99999/"]
)
def test_redact_url_never_raises_nor_shows_a_password(url):
    shown = redact_url(url)
    assert "pw" not in shown and "=t" not in shown


def test_scrub_masks_every_form_of_a_secret():
    secrets_ = [*url_secrets("http://u:p%40ss@h/x?token=ab%2Bcd&x=1"), ("T0KEN", "[token]")]
    text = "p@ss p%40ss ab+cd ab%2Bcd 'T0KEN' T0KEN x=1"
    assert scrub(text, secrets_) == "*** *** *** *** '[token]' [token] x=1"
    # Shorter than 4 characters: masked in URLs, not searched for in texts.
    assert scrub("a 1 b", url_secrets("http://h/?sig=1")) == "a 1 b"
