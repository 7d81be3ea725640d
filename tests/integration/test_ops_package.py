"""Install and package (issue 9): `make install` with PREFIX and DESTDIR, `make deb`
built by dpkg-buildpackage, its contents, control fields and lintian, and the packaged
binary run from an extracted tree; the man pages rendered by man(1).
"""
import gzip
import os
import re
import shutil
import subprocess

import pytest

from harness import REPO

VERSION = re.search(r'#define STICKYD_VERSION "([^"]+)"',
                    (REPO / "agent" / "version.h").read_text()).group(1)
DEB = REPO / "build" / "deb" / ("stickyd_%s_amd64.deb" % VERSION)
CHANGES = REPO / "build" / "deb" / ("stickyd_%s_amd64.changes" % VERSION)
MAN_PAGES = ["man8/stickyd.8", "man8/stickyctl.8", "man5/stickyd.json.5"]


def run(*argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(a) for a in argv], **kw)


@pytest.fixture(scope="module")
def deb():
    out = run("make", "-s", "deb", cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert DEB.exists()
    return DEB


def test_package_fields_and_contents(deb):
    fields = run("dpkg-deb", "-f", deb).stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    # computed by dpkg-shlibdeps from the binaries' NEEDED libraries
    for lib in ("libc6", "libev4", "libhiredis0.14", "libjansson4", "libmicrohttpd12",
                "libprotobuf-c1", "libssl3", "libsystemd0", "adduser"):
        assert re.search(r"(^|, )%s\b" % re.escape(lib), depends), (lib, depends)
    assert re.search(r"^Version: %s$" % re.escape(VERSION), fields, re.M)

    files = {line.split()[-1].lstrip(".") for line in run("dpkg-deb", "-c", deb).stdout
             .splitlines()}
    for path in ("/usr/sbin/stickyd", "/usr/bin/stickyctl", "/etc/stickyd/stickyd.json",
                 "/lib/systemd/system/stickyd.service", "/usr/share/man/man8/stickyd.8.gz",
                 "/usr/share/man/man8/stickyctl.8.gz", "/usr/share/man/man5/stickyd.json.5.gz",
                 "/usr/share/stickyd/haproxy/haproxy.cfg", "/usr/share/stickyd/haproxy/stickyd.spoe",
                 "/usr/share/stickyd/grafana/stickyd-dashboard.json",
                 "/usr/share/stickyd/prometheus/stickyd-alerts.yml",
                 "/usr/share/doc/stickyd/copyright"):
        assert path in files, path

    ctl = REPO / "build" / "deb" / "control"
    shutil.rmtree(ctl, ignore_errors=True)
    run("dpkg-deb", "-e", deb, ctl, check=True)
    assert (ctl / "conffiles").read_text().split() == ["/etc/stickyd/stickyd.json"]
    postinst = (ctl / "postinst").read_text()
    assert "adduser --system --group" in postinst and "secret.key" in postinst
    assert "deb-systemd-helper enable 'stickyd.service'" in postinst  # dh_installsystemd
    assert run("sh", "-n", ctl / "postinst").returncode == 0


def test_lintian_is_clean(deb):
    # every tag up to pedantic and info, overrides applied (each one explained in
    # debian/stickyd.lintian-overrides)
    out = run("lintian", "--pedantic", "-I", "-E", "--fail-on", "error,warning,info,pedantic",
              CHANGES)
    tags = [l for l in out.stdout.splitlines() if re.match(r"[EWIPX]: ", l)]
    assert out.returncode == 0 and not tags, out.stdout + out.stderr


def test_packaged_binary_runs_from_an_extracted_tree(deb, tmp_path):
    root = tmp_path / "root"
    run("dpkg-deb", "-x", deb, root, check=True)
    v = run(root / "usr/sbin/stickyd", "--version")
    assert v.returncode == 0 and v.stdout.startswith("stickyd %s " % VERSION), v
    c = run(root / "usr/sbin/stickyd", "--check-config", "--config",
            root / "etc/stickyd/stickyd.json")
    assert c.returncode == 0 and c.stdout.strip() == "configuration OK", c.stdout + c.stderr
    shipped = (root / "etc/stickyd/stickyd.json").read_text()
    assert '"listen": "127.0.0.1:9125"' in shipped  # metrics on, on loopback
    h = run(root / "usr/bin/stickyctl", "--help")
    assert h.returncode == 0 and "usage: stickyctl" in h.stdout
    # stickyctl serves no HTTP and notifies no service manager: it does not link them
    needed = run("objdump", "-p", root / "usr/bin/stickyctl").stdout
    assert "libmicrohttpd" not in needed and "libsystemd" not in needed
    unit = (root / "lib/systemd/system/stickyd.service").read_text()
    assert "ExecStart=/usr/sbin/stickyd --config /etc/stickyd/stickyd.json" in unit
    for page in MAN_PAGES:
        gz = root / "usr/share/man" / (page + ".gz")
        assert gzip.decompress(gz.read_bytes()).startswith(b".TH ")


def test_make_install_honours_prefix_and_destdir(tmp_path):
    dest = tmp_path / "dest"
    out = run("make", "-s", "install", "DESTDIR=%s" % dest, "PREFIX=/opt/sd", cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    for path in ("opt/sd/sbin/stickyd", "opt/sd/bin/stickyctl", "etc/stickyd/stickyd.json",
                 "opt/sd/lib/systemd/system/stickyd.service", "opt/sd/share/man/man8/stickyd.8",
                 "opt/sd/share/man/man5/stickyd.json.5",
                 "opt/sd/share/stickyd/haproxy/haproxy.cfg",
                 "opt/sd/share/stickyd/grafana/stickyd-dashboard.json"):
        assert (dest / path).is_file(), path
    unit = (dest / "opt/sd/lib/systemd/system/stickyd.service").read_text()
    assert "ExecStart=/opt/sd/sbin/stickyd --config /etc/stickyd/stickyd.json" in unit
    assert not re.search(r"@[A-Z]+@", unit)  # every placeholder substituted
    # an existing configuration is never overwritten
    cfg = dest / "etc/stickyd/stickyd.json"
    cfg.write_text("{}\n")
    run("make", "-s", "install", "DESTDIR=%s" % dest, "PREFIX=/opt/sd", cwd=REPO, check=True)
    assert cfg.read_text() == "{}\n"


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_pages_render_without_warnings(page):
    run("make", "-s", "man", cwd=REPO, check=True)
    path = REPO / "build" / "man" / page
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    out = run("man", "--warnings", "-l", path, env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    text = re.sub(r".\x08", "", out.stdout)  # overstrike (bold) of the tty rendering
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), (page, section)


def test_config_man_page_lists_every_key_of_the_loader(stickyd_bin):
    run("make", "-s", "man", cwd=REPO, check=True)
    ref = run(stickyd_bin, "--config-reference").stdout
    keys = re.findall(r"^\| `([^`]+)` \|", ref, re.M)
    assert len(keys) > 30
    env = dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8")
    text = run("man", "-l", REPO / "build/man/man5/stickyd.json.5", env=env).stdout
    text = re.sub(r".\x08", "", text)
    missing = [k for k in keys if not re.search(r"^\s+%s\s*$|^\s+%s\s" % (re.escape(k),
                                                                          re.escape(k)),
                                                text, re.M)]
    assert not missing, missing
