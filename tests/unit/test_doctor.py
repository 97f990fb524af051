"""``efsdk doctor`` on this host (a VM without Solarflare/Onload) and against a fake root tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from efsdk import doctor

REPO = Path(__file__).resolve().parents[2]
CHECK_KEYS = {"id", "name", "status", "detail", "fix"}


def run_doctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONLOAD", "EFSDK_ONLOAD"))}
    env.update(COLUMNS="200", PATH="/usr/bin:/bin")
    return subprocess.run(
        [sys.executable, "-m", "efsdk.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def test_doctor_on_this_host_json_schema():
    proc = run_doctor("--json")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and set(doc) == {"schema", "summary", "checks"}
    assert set(doc["summary"]) == {"pass", "warn", "fail"}
    assert sum(doc["summary"].values()) == len(doc["checks"])
    for c in doc["checks"]:
        assert set(c) == CHECK_KEYS and c["status"] in ("pass", "warn", "fail")
        assert c["status"] == "pass" or c["fix"]  # every non-pass says how to fix it
    ids = {c["id"] for c in doc["checks"]}
    for needed in ("nic.sfc", "efvi.device", "efvi.native", "onload.launcher", "onload.driver", "onload.preload",
                   "mem.hugepages", "cpu.isolated", "cpu.governor", "net.busy_poll"):  # fmt: skip
        assert needed in ids
    checks = {c["id"]: c for c in doc["checks"]}
    if not Path("/dev/sfc_char").exists():
        assert checks["efvi.device"]["status"] in ("warn", "fail")
    native = checks["efvi.native"]
    if native["status"] != "pass":
        assert "needs <etherfabric/ef_vi.h> + libciul; set EFSDK_ONLOAD_PREFIX" in native["detail"]
    if not Path("/dev/onload").exists():
        assert "/dev/onload missing" in checks["onload.driver"]["detail"]


def test_doctor_table_runs():
    proc = run_doctor()
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    assert "efsdk doctor" in proc.stdout and "pass," in proc.stdout


def _fake_host(root: Path) -> None:
    """A bare-metal-like tree: eth2 on sfc with 2 MSI IRQs, Onload drivers, huge pages, tuning."""
    pci = root / "sys/devices/pci0000:00/0000:01:00.0"
    (pci / "msi_irqs").mkdir(parents=True)
    for irq, cpus in ((120, "0"), (121, "3")):
        (pci / "msi_irqs" / str(irq)).touch()
        (root / f"proc/irq/{irq}").mkdir(parents=True)
        (root / f"proc/irq/{irq}/smp_affinity_list").write_text(cpus + "\n")
    drivers = root / "sys/bus/pci/drivers/sfc"
    drivers.mkdir(parents=True)
    os.symlink(drivers, pci / "driver")
    (root / "sys/class/net/eth2").mkdir(parents=True)
    os.symlink(pci, root / "sys/class/net/eth2/device")
    (root / "sys/class/net/lo").mkdir(parents=True)  # virtual: skipped
    (root / "dev").mkdir()
    (root / "dev/onload").touch()
    (root / "dev/sfc_char").touch()
    (root / "sys/module/onload").mkdir(parents=True)
    (root / "sys/module/onload/version").write_text("9.0.1\n")
    (root / "proc/meminfo").write_text("MemTotal: 1 kB\nHugePages_Total:    1024\n")
    cpu = root / "sys/devices/system/cpu"
    for n in range(4):
        (cpu / f"cpu{n}/cpufreq").mkdir(parents=True)
        (cpu / f"cpu{n}/cpufreq/scaling_governor").write_text("performance\n")
    (cpu / "isolated").write_text("2-3\n")
    (cpu / "nohz_full").write_text("2-3\n")
    (root / "proc/sys/net/core").mkdir(parents=True)
    (root / "proc/sys/net/core/busy_poll").write_text("50\n")
    (root / "proc/sys/net/core/busy_read").write_text("50\n")
    for d, v in (("all", "0"), ("eth2", "1")):
        (root / f"proc/sys/net/ipv4/conf/{d}").mkdir(parents=True)
        (root / f"proc/sys/net/ipv4/conf/{d}/rp_filter").write_text(v + "\n")


def test_doctor_fake_root_reports_present(tmp_path, monkeypatch):
    _fake_host(tmp_path)
    monkeypatch.delenv("ONLOAD_PREFIX", raising=False)
    report = doctor.run_checks(root=tmp_path)
    c = report.by_id
    assert c("nic.eth2").status == "pass" and "sfc" in c("nic.eth2").detail
    assert c("nic.sfc").detail == "eth2"
    assert c("efvi.device").status == "pass"
    assert c("onload.driver").status == "pass" and "9.0.1" in c("onload.driver").detail
    assert c("mem.hugepages").detail == "HugePages_Total 1024"
    assert c("cpu.isolated").status == "pass" and c("cpu.governor").status == "pass"
    assert c("net.busy_poll").status == "pass"
    irq = c("irq.eth2")
    assert irq.status == "warn" and "[121]" in irq.detail  # IRQ 121 lands on isolated CPU 3
    assert c("net.rp_filter.eth2").status == "warn" and "effective 1" in c("net.rp_filter.eth2").detail
    assert not any(ch.id.endswith(".lo") for ch in report.checks)
    caps = [ch for ch in report.checks if ch.id.startswith("efvi.caps.")]
    if c("efvi.native").status == "pass" and not Path("/dev/sfc_char").exists():
        # the binding asks the real driver about the fake root's sfc NIC: absent here, reported, no crash
        assert [ch.id for ch in caps] == ["efvi.caps.eth2"]
        assert caps[0].status == "warn" and "no Solarflare/AMD driver" in caps[0].detail
    elif c("efvi.native").status != "pass":
        assert caps == []  # no binding: no capability lookups
    json.dumps(report.as_dict())


def test_doctor_fails_on_inconsistent_onload(tmp_path, monkeypatch):
    """An sfc NIC without /dev/sfc_char, and Onload installed without drivers: both are failures."""
    _fake_host(tmp_path)
    (tmp_path / "dev/onload").unlink()
    (tmp_path / "dev/sfc_char").unlink()
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin/onload").write_text('#!/bin/sh\necho "Onload 9.9.9-fake"\n')
    (prefix / "bin/onload").chmod(0o755)
    monkeypatch.setenv("ONLOAD_PREFIX", str(prefix))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    report = doctor.run_checks(root=tmp_path)
    assert report.by_id("onload.launcher").detail.endswith("Onload 9.9.9-fake")
    assert report.by_id("onload.driver").status == "fail"
    assert report.by_id("efvi.device").status == "fail"
    assert report.failed


def test_doctor_empty_root_never_crashes(tmp_path):
    report = doctor.run_checks(root=tmp_path)  # nothing at all: every file missing
    assert report.checks and not any("could not run" in c.detail for c in report.checks)
    assert report.by_id("cpu.governor").status == "warn" and "VMs" in report.by_id("cpu.governor").detail
    assert doctor._cpulist("0-2,5,x,") == {0, 1, 2, 5}


def test_doctor_flags_silent_fallback(tmp_path):
    """libonload mapped into the process (fake /proc/self/maps) but no /dev/onload: sockets silently use the kernel."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/maps").write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib64/libonload.so\n")
    check = doctor.run_checks(root=tmp_path).by_id("onload.preload")
    assert check.status == "fail" and "silently" in check.detail and "--require" in check.fix
