"""`sevm render qemu|libvirt FILE` and `sevm render --template PATH FILE`: launch artefacts
for one variant of one VM (docs/rendering.md)."""
from __future__ import annotations

import sys

from ..diagnostics import EXIT_OK, DiagnosticError, error
from .common import path_argument

TARGETS = ("qemu", "libvirt")
USAGE = ("sevm render qemu|libvirt FILE [--vm NAME] [--variant KEY=VALUE,...] [--format sh|argv] "
         "[-o OUT]\n       sevm render --template PATH FILE [--vm NAME] [--variant KEY=VALUE,...] "
         "[-o OUT]")


def register(sub) -> None:
    parser = sub.add_parser(
        "render", help="render the QEMU command line, libvirt domain or a user template of a variant",
        usage=USAGE, description="Render one variant of one VM into launch configuration "
        "(docs/rendering.md).")
    parser.add_argument("args", nargs="+", metavar="ARG",
                        help="qemu or libvirt, then the manifest FILE (with --template: FILE only)")
    parser.add_argument("--vm", metavar="NAME", help="the vm to render (needed when FILE has several)")
    parser.add_argument("--variant", metavar="KEY=VALUE,...",
                        help="the variant of a matrix: keys vcpus, cpu, vmm, legacy-vm-type, sev-features")
    parser.add_argument("--format", choices=("sh", "argv"), default=None,
                        help="QEMU output: a shell script (default) or a JSON argv array")
    parser.add_argument("--template", metavar="PATH", type=path_argument,
                        help="render this Jinja template instead")
    parser.add_argument("-o", "--output", metavar="OUT", type=path_argument,
                        help="write here (atomically) instead of stdout")
    parser.set_defaults(func=run)


def _usage(message: str) -> DiagnosticError:
    return DiagnosticError(error(message, fatal_input=True))


def _parse_positionals(args) -> tuple[str | None, str]:
    positionals = list(args.args)
    if args.template is not None:
        if len(positionals) != 1:
            raise _usage(f"usage: {USAGE.splitlines()[1].strip()}")
        if args.format is not None:
            raise _usage("--format applies to 'sevm render qemu' only")
        if not positionals[0]:
            raise _usage("argument FILE: an empty path")
        return None, positionals[0]
    if len(positionals) != 2 or positionals[0] not in TARGETS:
        raise _usage(f"usage: {USAGE.splitlines()[0]}")
    if positionals[0] == "libvirt" and args.format is not None:
        raise _usage("--format applies to 'sevm render qemu' only")
    if not positionals[1]:
        raise _usage("argument FILE: an empty path")
    return positionals[0], positionals[1]


def _choose_vm(manifest, name: str | None):
    from .common import select_vms
    vms = select_vms(manifest, name)
    if not vms:
        raise _usage(f"{manifest.file} declares no vm: nothing to render")
    if len(vms) != 1:
        names = ", ".join(vm.name for vm in vms)
        raise _usage(f"{manifest.file} declares several vms ({names}): choose one with --vm NAME")
    return vms[0]


def run(args) -> int:
    from .. import render
    from ..fsutil import atomic_write
    from .common import load_manifest, print_diagnostics

    target, path = _parse_positionals(args)
    vm = _choose_vm(load_manifest(path), args.vm)
    variant = render.select_variant(vm, args.variant)
    if args.template is not None:
        result = render.render_template(args.template, vm, variant)
    elif target == "qemu":
        result = render.render_qemu(vm, variant, format=args.format or "sh")
    else:
        result = render.render_libvirt(vm, variant)
    print_diagnostics(result.warnings)
    data = render.encode_output(result.text)
    if args.output and args.output != "-":
        executable = target == "qemu" and (args.format or "sh") == "sh"
        atomic_write(args.output, data, mode=0o755 if executable else None)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return EXIT_OK
