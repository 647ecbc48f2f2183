"""`sevm measure`: the expected launch digest (GCTX.LD) of every variant of every VM.

    sevm measure FILE [--vm NAME] [--format text|json] [--no-cache] [--dump-vmsa DIR]
                      [--tik F --mnonce M --api-major N --api-minor N --build N]

With the five measurement options (all or none) it also prints the launch measurement
(the HMAC the host reports) and the 48-byte blob as QEMU shows it.  The TIK is never shown.
``--dump-vmsa DIR`` writes each SEV-ES variant's VMSA pages as
``DIR/<vm>-<vcpus>vcpu-<cpu>-<vmm>-<profile>-sf<features>-vcpu<i>.bin``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..diagnostics import EXIT_OK, DiagnosticError, error
from .common import integer, path_argument

MEASUREMENT_OPTIONS = ("tik", "mnonce", "api_major", "api_minor", "build")


def register(sub) -> None:
    p = sub.add_parser(
        "measure", help="the expected launch digest of every variant (and optionally the "
                        "launch measurement)",
        description="Compute the launch digest GCTX.LD that the AMD secure processor will "
                    "compute for every variant of every VM in FILE.  With --tik, --mnonce, "
                    "--api-major, --api-minor and --build also the launch measurement (HMAC) "
                    "and the 48-byte blob that QMP query-sev-launch-measure reports.")
    p.add_argument("file", metavar="FILE", type=path_argument, help="the .sevm manifest")
    p.add_argument("--vm", metavar="NAME", help="only this vm (default: every vm in FILE)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-cache", action="store_true",
                   help="hash every artefact from its bytes, ignoring the digest cache")
    p.add_argument("--dump-vmsa", metavar="DIR", type=path_argument,
                   help="write the VMSA page of every vCPU of every SEV-ES variant into DIR")
    m = p.add_argument_group("launch measurement (all five together)")
    m.add_argument("--tik", metavar="F", type=path_argument, help="the 16-byte binary TIK file (sevctl NAME_tik.bin)")
    m.add_argument("--mnonce", metavar="B64|HEX", help="the 16-byte nonce of the launch")
    m.add_argument("--api-major", metavar="N", type=integer(0, 0xFF))
    m.add_argument("--api-minor", metavar="N", type=integer(0, 0xFF))
    m.add_argument("--build", "--build-id", dest="build", metavar="N", type=integer(0, 0xFF))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..lock.shared import Prefetch
    from .common import bytes_safe_output, load_manifest, select_vms
    bytes_safe_output()

    inputs, tik = _measurement_inputs(args)  # usage errors before any hashing
    vms = select_vms(load_manifest(args.file), args.vm)
    # the firmware is left to compute_many: it needs the hash state, not only the digest
    hashing = Prefetch((a for vm in vms for a in (vm.kernel, vm.initrd) if a), _cache(args))
    from ..measure.digest import compute_many
    from ..measure.report import to_json, to_text
    try:
        results = compute_many(vms, cache=hashing.digests())
    finally:  # nothing of this command goes on hashing (and storing) after it (a refused
        hashing.wait()  # firmware fails before the first lookup would have waited)
    hmacs = _hmacs(results, inputs, tik) if inputs else None
    if args.dump_vmsa:
        _dump_vmsa(Path(args.dump_vmsa), results)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(results, hmacs), indent=2) + "\n")
    else:
        sys.stdout.write(to_text(results, hmacs, inputs))
    return EXIT_OK


def _cache(args):
    if args.no_cache:
        return None  # and the cache module need not be imported
    from ..lock.cache import open_cache
    return open_cache()


def _measurement_inputs(args):
    given = [name for name in MEASUREMENT_OPTIONS if getattr(args, name) is not None]
    if not given:
        return None, None
    from ..measure.launch import decode_bytes_arg, read_tik
    from ..measure.report import MeasurementInputs

    if len(given) != len(MEASUREMENT_OPTIONS):
        missing = [f"--{n.replace('_', '-')}" for n in MEASUREMENT_OPTIONS if n not in given]
        raise DiagnosticError(error(
            "the launch measurement needs --tik, --mnonce, --api-major, --api-minor and "
            f"--build together; missing {', '.join(missing)}", fatal_input=True))
    if args.file == "-" and args.tik == "-":
        raise DiagnosticError(error("only one input can be '-' (standard input): FILE, --tik",
                                    fatal_input=True))
    mnonce = decode_bytes_arg(args.mnonce, 16, "--mnonce")
    tik = read_tik(args.tik)  # a file, a pipe or '-', as sevm verify takes it
    return MeasurementInputs(args.api_major, args.api_minor, args.build, mnonce), tik


def _hmacs(results, inputs, tik: bytes):
    from ..measure.launch import launch_measurement, measurement_blob
    from ..measure.report import Hmac

    out = []
    for m in results:
        row = []
        for v in m.variants:
            measure = launch_measurement(v.launch_digest, tik, api_major=inputs.api_major,
                                         api_minor=inputs.api_minor, build=inputs.build,
                                         policy=m.vm.policy.value, mnonce=inputs.mnonce)
            row.append(Hmac(measure, measurement_blob(measure, inputs.mnonce)))
        out.append(tuple(row))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def vmsa_file_stem(vm_name: str, variant) -> str:
    """``<vm>-<vcpus>vcpu-<cpu>-<vmm>-<profile>-sf<features>``; see the module docstring."""
    cpu = variant.cpu.label if variant.cpu else "nocpu"
    profile = "legacy" if variant.legacy_vm_type else "init2"
    return "-".join(_slug(part) for part in (
        vm_name, f"{variant.vcpus}vcpu", cpu, variant.vmm.value, profile,
        f"sf{variant.sev_features:x}"))


def _distinct_stems(results) -> dict[int, str]:
    """The file stem of every variant; two that would share files (vms "a b" and "a_b")
    are refused before anything is written: one vm's pages would replace the other's."""
    stems: dict[int, str] = {}
    owner: dict[str, str] = {}
    for m in results:
        for result in m.variants:
            stem = vmsa_file_stem(m.vm.name, result.variant)
            if stem in owner and owner[stem] != m.vm.name:
                raise DiagnosticError(error(
                    f"--dump-vmsa: vms {owner[stem]!r} and {m.vm.name!r} would write the same "
                    f"files ({stem}-vcpu*.bin); dump one at a time with --vm NAME",
                    fatal_input=True))
            owner[stem] = m.vm.name
            stems[id(result)] = stem
    return stems


def _dump_vmsa(directory: Path, results) -> None:
    from ..fsutil import OutputError, atomic_write
    from ..measure.digest import vmsa_pages

    stems = _distinct_stems(results)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {directory}: {exc.strerror or exc}") from None
    count = 0
    for m in results:
        for result in m.variants:
            stem = stems[id(result)]
            for index, page in enumerate(vmsa_pages(result)):
                atomic_write(directory / f"{stem}-vcpu{index}.bin", page)
                count += 1
        if not m.variants or m.variants[0].profile is None:
            print(f"sevm: note: vm {m.vm.name} is type {m.vm.type.value}: it has no VMSA pages",
                  file=sys.stderr)
    print(f"sevm: wrote {count} VMSA page(s) to {directory}", file=sys.stderr)
