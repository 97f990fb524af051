"""Host readiness checks for kernel bypass, shared by ``efsdk doctor`` and tests.

Every check returns pass / warn / fail with a one-line detail and the fix.
``fail`` is kept for setups that are inconsistent or will silently fall back
(Onload installed but its drivers not loaded, libonload preloaded without
/dev/onload, a Solarflare NIC without /dev/sfc_char); a host with no
acceleration at all (a VM, a laptop) only warns, because efsdk then runs on
kernel sockets / AF_PACKET by design.

All lookups go through ``root`` (default ``/``), so a test can point /sys,
/dev and /proc at a tmp tree.  No check may crash the report: a missing file
is a finding, and an unexpected exception becomes a ``warn`` naming it.

JSON schema (``Report.as_dict``, version 1)::

    {"schema": 1, "summary": {"pass": int, "warn": int, "fail": int},
     "checks": [{"id": str, "name": str, "status": "pass"|"warn"|"fail",
                 "detail": str, "fix": str|null}, ...]}
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from efsdk.onload import detect

SCHEMA = 1
Status = Literal["pass", "warn", "fail"]
SFC_DRIVERS = ("sfc",)  # Solarflare/AMD net driver name (the /sys/class/net/IF/device/driver link)
NATIVE_EFVI = "efsdk._native_efvi"


@dataclass(frozen=True)
class Check:
    id: str
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def by_id(self, id_: str) -> Check:
        return next(c for c in self.checks if c.id == id_)

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "summary": self.summary(), "checks": [c.as_dict() for c in self.checks]}


@dataclass(frozen=True)
class Interface:
    name: str
    driver: str | None  # None: virtual (no device link)
    irqs: tuple[int, ...]


def _p(root: str | os.PathLike[str], path: str) -> Path:
    return Path(root) / path.lstrip("/")


def _read(root: str | os.PathLike[str], path: str) -> str | None:
    return detect.read_text(root, path)


def _cpulist(text: str | None) -> set[int]:
    """``"1-3,7"`` -> {1, 2, 3, 7}; empty/None/garbage -> empty set."""
    cpus: set[int] = set()
    for part in (text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return cpus


def interfaces(root: str | os.PathLike[str] = "/") -> list[Interface]:
    """Every interface in /sys/class/net with its driver (link basename) and its MSI IRQs if visible."""
    out = []
    try:
        names = sorted(e.name for e in _p(root, "/sys/class/net").iterdir())
    except OSError:
        return out
    for name in names:
        dev = _p(root, f"/sys/class/net/{name}/device")
        driver = None
        try:
            driver = Path(os.readlink(dev / "driver")).name
        except OSError:
            pass
        out.append(Interface(name, driver, _irqs(root, name, dev)))
    return out


def _irqs(root: str | os.PathLike[str], name: str, dev: Path) -> tuple[int, ...]:
    # PCI NICs list their MSI-X vectors under the PCI device; a virtio NIC's device is a child of
    # the virtio PCI function.  Never look at other parents: a PCIe port's vectors aren't the NIC's.
    dirs = [dev / "msi_irqs"]
    try:
        if Path(os.readlink(dev / "subsystem")).name == "virtio":
            dirs.append(dev / ".." / "msi_irqs")
    except OSError:
        pass
    for d in dirs:
        try:
            return tuple(sorted(int(e.name) for e in d.iterdir() if e.name.isdigit()))
        except OSError:
            continue
    # Fallback: /proc/interrupts lines naming the interface (sfc names its queues "eth2-0", ...).
    text = _read(root, "/proc/interrupts") or ""
    irqs = []
    for line in text.splitlines():
        head, _, rest = line.partition(":")
        if head.strip().isdigit() and any(tok == name or tok.startswith(name + "-") for tok in rest.split()):
            irqs.append(int(head))
    return tuple(irqs)


# ---------------------------------------------------------------------------- checks


def check_nics(root: str | os.PathLike[str]) -> Iterator[Check]:
    ifs = [i for i in interfaces(root) if i.driver]
    sfc = [i for i in ifs if i.driver in SFC_DRIVERS]
    for i in ifs:
        if i.driver in SFC_DRIVERS:
            detail = f"driver {i.driver}: Solarflare/AMD, ef_vi/Onload capable"
            yield Check(f"nic.{i.name}", f"NIC {i.name}", "pass", detail)
        else:
            yield Check(
                f"nic.{i.name}",
                f"NIC {i.name}",
                "warn",
                f"driver {i.driver}: not Solarflare/AMD, so no ef_vi/Onload on it (kernel sockets / AF_PACKET only)",
                "receive the feed on a Solarflare/AMD (sfc) interface for kernel bypass",
            )
    if not sfc:
        found = ", ".join(f"{i.name} ({i.driver})" for i in ifs) or "no physical interfaces in /sys/class/net"
        fix = "install a Solarflare/AMD NIC (sfc driver)"
        yield Check("nic.sfc", "Solarflare/AMD NIC", "warn", f"none found: {found}", fix)
    else:
        yield Check("nic.sfc", "Solarflare/AMD NIC", "pass", ", ".join(i.name for i in sfc))


def check_efvi(root: str | os.PathLike[str]) -> Iterator[Check]:
    has_sfc = any(i.driver in SFC_DRIVERS for i in interfaces(root))
    if _p(root, "/dev/sfc_char").exists():
        yield Check("efvi.device", "ef_vi device", "pass", "/dev/sfc_char present")
    else:
        yield Check(
            "efvi.device",
            "ef_vi device",
            "fail" if has_sfc else "warn",
            "/dev/sfc_char missing" + (" although an sfc NIC is present" if has_sfc else ""),
            "load the Solarflare char driver (`onload_tool reload` or `modprobe sfc_char`)",
        )
    if importlib.util.find_spec(NATIVE_EFVI) is None:
        yield Check(
            "efvi.native",
            "ef_vi binding",
            "warn",
            f"{NATIVE_EFVI} not built: needs <etherfabric/ef_vi.h> + libciul; set EFSDK_ONLOAD_PREFIX",
            "install Onload (headers + libciul), export EFSDK_ONLOAD_PREFIX=<prefix>, rebuild efsdk",
        )
        return
    try:
        mod = importlib.import_module(NATIVE_EFVI)
    except Exception as exc:  # a stale/broken build must be reported, not crash doctor
        yield Check("efvi.native", "ef_vi binding", "fail", f"{NATIVE_EFVI} fails to import: {exc}", "rebuild efsdk")
        return
    try:  # the libciul it was linked against, as the library reports itself
        version = mod.ffi.string(mod.lib.efsdk_efvi_libciul_version()).decode("ascii", "replace")
    except Exception:  # an older build without the call: still a working binding
        version = None
    yield Check("efvi.native", "ef_vi binding", "pass",
                f"{NATIVE_EFVI} built" + (f" (libciul {version})" if version else ""))  # fmt: skip
    if _p(root, "/dev/sfc_char").exists():
        yield from _efvi_capabilities(i.name for i in interfaces(root) if i.driver in SFC_DRIVERS)


def _efvi_capabilities(names: Iterable[str]) -> Iterator[Check]:
    """Per sfc interface, what its NIC offers ef_vi (express datapath, CTPIO, X3 model, timestamps)."""
    from efsdk.sources import efvi  # noqa: PLC0415 - only with the binding built

    for name in names:
        try:
            caps = efvi.capabilities(name)
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            yield Check(f"efvi.caps.{name}", f"ef_vi on {name}", "warn", f"capabilities unreadable: {exc}",
                        "check the driver (`onload_tool reload`) and the interface")  # fmt: skip
            continue
        have = [label for key, label in (("hw_rx_timestamping", "hw rx timestamps"), ("hw_tx_timestamping",
                "hw tx timestamps"), ("ctpio", "CTPIO"), ("ctpio_only", "CTPIO only"), ("rx_ref", "X3 rx_ref"),
                ("rx_poll", "rx_poll")) if caps.get(key)]  # fmt: skip
        if (caps.get("extra_datapaths") or 0) & 1:
            have.append("express datapath")
        yield Check(f"efvi.caps.{name}", f"ef_vi on {name}", "pass", ", ".join(have) or "basic receive/transmit")


def check_afxdp(root: str | os.PathLike[str]) -> Iterator[Check]:
    """The optional AF_XDP binding (libxdp + libbpf); the kernel side is probed when a source opens."""
    try:
        from efsdk.sources.afxdp import afxdp_available, libbpf_version  # noqa: PLC0415

        built = afxdp_available()
    except Exception as exc:  # a stale/broken build must be reported, not crash doctor
        yield Check("afxdp.native", "AF_XDP binding", "fail", f"efsdk._native_afxdp fails to import: {exc}",
                    "rebuild efsdk")  # fmt: skip
        return
    if built:
        yield Check("afxdp.native", "AF_XDP binding", "pass", f"efsdk._native_afxdp built (libbpf {libbpf_version()})")
    else:
        yield Check("afxdp.native", "AF_XDP binding", "warn", "efsdk._native_afxdp not built: needs libxdp + libbpf",
                    "apt-get install libxdp-dev libbpf-dev pkg-config, then rebuild efsdk")  # fmt: skip


def check_onload(root: str | os.PathLike[str]) -> Iterator[Check]:
    st = detect.onload_status(root)
    if st.launcher:
        ver = st.launcher_version or "version unknown"
        yield Check("onload.launcher", "Onload launcher", "pass", f"{st.launcher}: {ver}")
    else:
        yield Check(
            "onload.launcher",
            "Onload launcher",
            "warn",
            "no `onload` on PATH or in $ONLOAD_PREFIX/bin"
            + (f" (libonload.so at {st.libonload})" if st.libonload else ""),
            "install Onload (github.com/Xilinx-CNS/onload or AMD's packages); "
            "put its bin/ on PATH or set ONLOAD_PREFIX",
        )
    installed = bool(st.launcher or st.libonload)
    if st.dev_onload:
        module = st.module_version or "version unknown"
        yield Check("onload.driver", "Onload drivers", "pass", f"/dev/onload present, module {module}")
    else:
        yield Check(
            "onload.driver",
            "Onload drivers",
            "fail" if installed else "warn",
            "/dev/onload missing"
            + (": Onload is installed but apps would run un-accelerated" if installed else "")
            + ("" if st.module_version else "; module not loaded (/sys/module/onload/version)"),
            "`onload_tool reload` (needs a Solarflare/AMD NIC)",
        )
    if st.preloaded and not st.dev_onload:
        yield Check(
            "onload.preload",
            "this process",
            "fail",
            "libonload is preloaded but /dev/onload is missing: every socket silently uses the kernel",
            "load the drivers, or drop libonload from LD_PRELOAD; launch with `efsdk onload run --require`",
        )
    else:
        yield Check(
            "onload.preload",
            "this process",
            "pass",
            "libonload preloaded"
            if st.preloaded
            else "libonload not preloaded (normal for doctor; apps use `efsdk onload run`)",
        )


def check_hugepages(root: str | os.PathLike[str]) -> Iterator[Check]:
    meminfo = _read(root, "/proc/meminfo")
    total = None
    for line in (meminfo or "").splitlines():
        if line.startswith("HugePages_Total:"):
            total = int(line.split()[1])
    fix = "sysctl -w vm.nr_hugepages=1024 (ef_vi packet buffers and X3 1 MB superbufs use 2 MiB pages)"
    if total is None:
        yield Check("mem.hugepages", "huge pages", "warn", "HugePages_Total not in /proc/meminfo", fix)
    elif total == 0:
        yield Check("mem.hugepages", "huge pages", "warn", "HugePages_Total 0", fix)
    else:
        yield Check("mem.hugepages", "huge pages", "pass", f"HugePages_Total {total}")


def check_cpus(root: str | os.PathLike[str]) -> Iterator[Check]:
    iso = _read(root, "/sys/devices/system/cpu/isolated")
    nohz = _read(root, "/sys/devices/system/cpu/nohz_full")
    if _cpulist(iso):
        detail = f"isolated {iso}; nohz_full {nohz or 'not set'}"
        if _cpulist(nohz):
            yield Check("cpu.isolated", "isolated CPUs", "pass", detail)
        else:
            fix = "add nohz_full=<same cpus> rcu_nocbs=<same cpus> to the kernel command line"
            yield Check("cpu.isolated", "isolated CPUs", "warn", detail, fix)
    else:
        yield Check(
            "cpu.isolated",
            "isolated CPUs",
            "warn",
            "none (/sys/devices/system/cpu/isolated empty" + ("" if iso is not None else " or missing") + ")",
            "boot with isolcpus=N-M nohz_full=N-M rcu_nocbs=N-M and pin the feed/strategy threads there",
        )
    govs: dict[str, list[str]] = {}
    try:
        cpu_dirs = sorted(_p(root, "/sys/devices/system/cpu").glob("cpu[0-9]*"))
    except OSError:
        cpu_dirs = []
    for d in cpu_dirs:
        g = detect.read_text(d, "cpufreq/scaling_governor")
        if g:
            govs.setdefault(g, []).append(d.name)
    fix = "cpupower frequency-set -g performance (and disable deep C-states: intel_idle.max_cstate=0 / BIOS)"
    if not govs:
        yield Check(
            "cpu.governor",
            "CPU governor",
            "warn",
            "no cpufreq/scaling_governor: typical of VMs (the hypervisor owns frequency) or cpufreq disabled",
            "on bare metal, enable cpufreq and " + fix,
        )
    elif set(govs) == {"performance"}:
        yield Check("cpu.governor", "CPU governor", "pass", f"performance on {len(govs['performance'])} CPUs")
    else:
        detail = ", ".join(f"{g} on {len(c)} CPUs" for g, c in sorted(govs.items()))
        yield Check("cpu.governor", "CPU governor", "warn", detail, fix)


def check_busy_poll(root: str | os.PathLike[str]) -> Iterator[Check]:
    vals = {k: _read(root, f"/proc/sys/net/core/{k}") for k in ("busy_poll", "busy_read")}
    detail = ", ".join(f"net.core.{k}={v if v is not None else 'missing'}" for k, v in vals.items())
    fix = "sysctl -w net.core.busy_poll=50 net.core.busy_read=50 (µs; helps the kernel-socket fallback path)"
    ok = all(v is not None and v.isdigit() and int(v) > 0 for v in vals.values())
    yield Check("net.busy_poll", "busy-poll sysctls", "pass" if ok else "warn", detail, None if ok else fix)


def check_irqs(root: str | os.PathLike[str]) -> Iterator[Check]:
    isolated = _cpulist(_read(root, "/sys/devices/system/cpu/isolated"))
    for i in interfaces(root):
        if not i.driver:
            continue
        cid, name = f"irq.{i.name}", f"IRQ affinity {i.name}"
        if not i.irqs:
            yield Check(
                cid,
                name,
                "warn",
                "could not identify the NIC's IRQs (no msi_irqs, none named in /proc/interrupts)",
                "check /proc/interrupts by hand and pin queue IRQs away from isolated CPUs",
            )
            continue
        aff = {n: _read(root, f"/proc/irq/{n}/smp_affinity_list") for n in i.irqs}
        on_iso = sorted(n for n, a in aff.items() if _cpulist(a) & isolated)
        detail = " ".join(f"{n}->{a if a is not None else '?'}" for n, a in aff.items())
        if on_iso:
            yield Check(
                cid,
                name,
                "warn",
                f"IRQs {on_iso} can land on isolated CPUs: {detail}",
                "echo <housekeeping cpus> > /proc/irq/N/smp_affinity_list (and stop irqbalance)",
            )
        else:
            yield Check(cid, name, "pass", detail + ("" if isolated else " (no isolated CPUs to keep clear)"))


def check_rp_filter(root: str | os.PathLike[str]) -> Iterator[Check]:
    all_v = _read(root, "/proc/sys/net/ipv4/conf/all/rp_filter")
    for i in interfaces(root):
        if not i.driver:
            continue
        if_v = _read(root, f"/proc/sys/net/ipv4/conf/{i.name}/rp_filter")
        vals = [int(v) for v in (all_v, if_v) if v is not None and v.isdigit()]
        cid, name = f"net.rp_filter.{i.name}", f"rp_filter {i.name}"
        if not vals:
            yield Check(cid, name, "warn", "rp_filter not readable", "sysctl net.ipv4.conf.all.rp_filter")
            continue
        effective = max(vals)  # the kernel uses max(all, interface)
        detail = f"effective {effective} (all={all_v}, {i.name}={if_v})"
        if effective == 1:
            yield Check(
                cid,
                name,
                "warn",
                detail + ": strict mode drops multicast whose source isn't routed via this interface",
                f"sysctl -w net.ipv4.conf.{i.name}.rp_filter=2 net.ipv4.conf.all.rp_filter=2 (loose) on feed NICs",
            )
        else:
            yield Check(cid, name, "pass", detail)


CHECKS: tuple[tuple[str, Callable[[str | os.PathLike[str]], Iterator[Check]]], ...] = (
    ("nic", check_nics),
    ("efvi", check_efvi),
    ("afxdp", check_afxdp),
    ("onload", check_onload),
    ("mem.hugepages", check_hugepages),
    ("cpu", check_cpus),
    ("net.busy_poll", check_busy_poll),
    ("irq", check_irqs),
    ("net.rp_filter", check_rp_filter),
)


def run_checks(root: str | os.PathLike[str] = "/") -> Report:
    """Run every check against ``root``; never raises."""
    report = Report()
    for cid, fn in CHECKS:
        try:
            report.checks.extend(fn(root))
        except Exception as exc:  # a doctor must never crash: report the broken check instead
            report.checks.append(Check(cid, cid, "warn", f"check could not run: {type(exc).__name__}: {exc}", None))
    return report
