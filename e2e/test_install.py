"""`make install DESTDIR=…`: the tree a Debian admin expects, and each piece checked by the
tool that will read it — Apache's config test with the installed module and snippet,
`systemd-analyze verify` on the installed units, `handoffd --check-config` on the installed
configuration — then `make uninstall` takes it all away again (the admin's files stay)."""

import os
import shutil
import subprocess

import pytest

from harness import APACHE_BIN, APACHE_MODULES, REPO, make_temp_dir


@pytest.fixture(scope="module")
def tree():
    dest = make_temp_dir(prefix="/tmp/hoi.")
    env = {**os.environ, "DESTDIR": str(dest), "BUILD": "debug"}
    result = subprocess.run(["scripts/install.sh", "install"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    yield dest, env
    shutil.rmtree(dest, ignore_errors=True)


def test_the_installed_tree(tree):
    dest, _ = tree
    expected = ["usr/local/bin/handoffd", "usr/local/bin/handoff-exec",
                str(APACHE_MODULES / "mod_socket_handoff.so").lstrip("/"),
                "etc/apache2/mods-available/socket_handoff.load", "etc/apache2/mods-available/socket_handoff.conf",
                "usr/local/lib/systemd/system/handoffd.service", "usr/local/lib/systemd/system/handoffd.socket",
                "usr/local/lib/systemd/system/handoff-exec.service",
                "etc/handoffd/handoffd.yaml", "etc/handoffd/handoffd.env"]
    for path in expected:
        assert (dest / path).is_file(), path
    assert os.access(dest / "usr/local/bin/handoffd", os.X_OK)
    assert (dest / "etc/handoffd/handoffd.env").stat().st_mode & 0o077 == 0   # may hold the API key
    yaml = (dest / "etc/handoffd/handoffd.yaml").read_text()
    assert "#redis-url:" in yaml and "#completion-url:" in yaml and "socket: /run/handoffd/handoffd.sock" in yaml


def test_the_installed_configuration_checks(tree):
    dest, _ = tree
    result = subprocess.run([str(dest / "usr/local/bin/handoffd"), "--config", str(dest / "etc/handoffd/handoffd.yaml"), "--check-config"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "configuration OK" in result.stdout, result.stdout + result.stderr
    broken = make_temp_dir() / "broken.yaml"
    broken.write_text((dest / "etc/handoffd/handoffd.yaml").read_text() + "max-connections: lots\n")
    result = subprocess.run([str(dest / "usr/local/bin/handoffd"), "--config", str(broken), "--check-config"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "max-connections" in result.stderr
    shutil.rmtree(broken.parent, ignore_errors=True)


def test_apache_accepts_the_installed_module_and_snippet(tree):
    dest, _ = tree
    root = make_temp_dir()
    mods = dest / "etc/apache2/mods-available"
    load = (mods / "socket_handoff.load").read_text().replace(str(APACHE_MODULES), str(dest / str(APACHE_MODULES).lstrip("/")))
    (root / "logs").mkdir()
    conf = root / "httpd.conf"
    conf.write_text(f'LoadModule mpm_prefork_module "{APACHE_MODULES}/mod_mpm_prefork.so"\n'
                    f'LoadModule authz_core_module "{APACHE_MODULES}/mod_authz_core.so"\n'
                    f'{load}\nInclude "{mods / "socket_handoff.conf"}"\n'
                    f'ServerRoot "{root}"\nServerName 127.0.0.1\nListen 127.0.0.1:1\nPidFile "{root}/httpd.pid"\n'
                    f'ErrorLog "{root}/logs/error.log"\nDefaultRuntimeDir "{root}"\n')
    result = subprocess.run([APACHE_BIN, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Syntax OK" in result.stderr, result.stderr
    assert "socket_handoff_module" in subprocess.run([APACHE_BIN, "-M", "-f", str(conf)], capture_output=True, text=True, timeout=30).stdout
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (scripts/install-deps.sh installs systemd)")
def test_systemd_accepts_the_installed_units(tree):
    """The units as installed, with their absolute paths pointed into DESTDIR (where the
    binaries are): no warnings at all."""
    dest, _ = tree
    units = make_temp_dir()
    for unit in ("handoffd.service", "handoffd.socket", "handoff-exec.service"):
        text = (dest / "usr/local/lib/systemd/system" / unit).read_text()
        text = text.replace("/usr/local/bin/", f"{dest}/usr/local/bin/")
        (units / unit).write_text(text)
    # handoff-exec's handler is the admin's program: stand one in where the unit names it.
    handler = units / "handler"
    handler.write_text("#!/bin/sh\ncat\n")
    handler.chmod(0o755)
    text = (units / "handoff-exec.service").read_text().replace("/usr/local/lib/handoff-exec/handler", str(handler))
    (units / "handoff-exec.service").write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *(str(units / u) for u in ("handoffd.socket", "handoffd.service", "handoff-exec.service"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    shutil.rmtree(units, ignore_errors=True)


def test_uninstall_leaves_only_the_admins_files(tree):
    dest, env = tree
    (dest / "etc/handoffd/handoffd.yaml").write_text("socket: /run/handoffd/handoffd.sock\nworkers: 2\n")
    again = subprocess.run(["scripts/install.sh", "install"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "kept" in again.stdout
    assert "workers: 2" in (dest / "etc/handoffd/handoffd.yaml").read_text()    # never overwritten
    result = subprocess.run(["scripts/install.sh", "uninstall"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert left == ["etc/handoffd/handoffd.env", "etc/handoffd/handoffd.yaml"], left
    purge = subprocess.run(["scripts/install.sh", "uninstall"], cwd=REPO, env={**env, "PURGE": "1"}, capture_output=True, text=True, timeout=60)
    assert purge.returncode == 0
    assert not any(p.is_file() for p in dest.rglob("*"))
