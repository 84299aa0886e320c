"""Fixtures for the end-to-end tests: a private Apache per MPM with the module, and handoffd."""

import signal

import pytest

from harness import MAIN_CONF, Apache, Daemon, ensure_module

MPMS = ["prefork", "event"]


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): fail the test after this many seconds")


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Bound every test (default 60 s) with SIGALRM; override with @pytest.mark.time_limit(s)."""
    marker = request.node.get_closest_marker("time_limit")
    limit = marker.args[0] if marker else 60

    def expired(*_):
        raise TimeoutError(f"test exceeded its {limit}s time limit")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def module_path():
    """The built module (built with `make -C apache` when missing)."""
    return ensure_module()


@pytest.fixture(scope="module", params=MPMS)
def apache(request, module_path):
    """Apache with the module, parametrized over prefork (mod_php) and event (php-fpm)."""
    with Apache(request.param, conf=MAIN_CONF, module=module_path) as a:
        yield a


@pytest.fixture(scope="module")
def prefork(module_path):
    """Apache prefork + mod_php with the module (tests that need only one MPM)."""
    with Apache("prefork", conf=MAIN_CONF, module=module_path) as a:
        yield a


@pytest.fixture(scope="module")
def daemon(apache):
    """handoffd (5 mock messages, 10 ms apart) with its socket inside `apache`'s prefix."""
    with Daemon(apache.run_dir / "d.sock") as d:
        yield d


@pytest.fixture(scope="module")
def prefork_daemon(prefork):
    with Daemon(prefork.run_dir / "d.sock") as d:
        yield d
