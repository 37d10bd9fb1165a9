"""The browser tests' shared fixtures: a JupyterLab server and Debian's chromium, one of each per module."""

import pytest

from .lab import SCREENSHOTS, launch_chromium, start_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(autouse=True)
def fresh_kernels(request):
    """Each test's notebooks run beside no kernel left from an earlier test."""
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").shut_down_kernels()
