"""Templates and imports: extends chains, field-by-field block merge, raw policies,
paths relative to the file that names them, diamond imports."""
from __future__ import annotations

from frontend_support import compile_files, errors, write
from sevmanifest.model import Disk, GuestType, Vmm


def compiled(tmp_path, files, root="m.sevm"):
    result = compile_files(tmp_path, files, root)
    assert not errors(result), [d.message for d in result.diagnostics]
    return result.manifest


CHAIN = '''
template "grand" {
    firmware "fw.fd"
    vcpus 1
    memory 1GiB
    machine "pc"
}
template "parent" extends "grand" {
    vcpus 2
    memory 2GiB
}
vm "child" extends "parent" {
    vcpus 4
}
'''


def test_extends_chain_child_overrides_parent_overrides_grandparent(tmp_path):
    (v,) = compiled(tmp_path, {"m.sevm": CHAIN}).vms
    assert (v.vcpus, v.memory, v.machine, v.firmware.written) == ((4,), 2 << 30, "pc", "fw.fd")
    # where each value came from
    assert (v.origins["vcpus"].line, v.origins["memory"].line, v.origins["machine"].line) == (13, 10, 6)


def test_lists_are_replaced_not_concatenated(tmp_path):
    text = ('template "t" {\n    vcpus 1, 2\n    cpu "EPYC", "EPYC-Rome"\n}\n'
            'vm "v" extends "t" {\n    firmware "f"\n    vcpus 8\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": text}).vms
    assert v.vcpus == (8,) and [c.name for c in v.cpus] == ["EPYC", "EPYC-Rome"]


BLOCKS = '''
template "t" {
    firmware "fw.fd"
    host {
        vmm ec2
        cbitpos 47
        reduced-phys-bits 5
    }
    policy {
        debug deny
        key-sharing deny
        send deny
    }
    launch {
        disk "root.img" format qcow2
        net user
    }
}
vm "v" extends "t" {
    host {
        cbitpos 51
    }
    policy {
        key-sharing allow
        min-api 1.2
    }
    launch {
        console none
    }
}
'''


def test_blocks_merge_field_by_field(tmp_path):
    (v,) = compiled(tmp_path, {"m.sevm": BLOCKS}).vms
    assert (v.host.vmms, v.host.cbitpos, v.host.reduced_phys_bits) == ((Vmm.EC2,), 51, 5)
    assert v.policy.value == 0x1 | 0x8 | (1 << 16) | (2 << 24)  # NODBG, NOSEND; NOKS cleared
    assert v.launch.disks == (Disk("root.img", "qcow2", tmp_path / "root.img"),)
    assert (v.launch.net, v.launch.console) == ("user", "none")
    assert v.origins["host.vmm"].line == 5 and v.origins["host.cbitpos"].line == 21


def test_raw_policy_replaces_every_inherited_field(tmp_path):
    text = ('template "t" {\n    policy {\n        key-sharing deny\n        send deny\n'
            '        min-api 1.0\n    }\n}\nvm "v" extends "t" {\n    firmware "f"\n'
            '    policy 0x20\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": text}).vms
    assert v.policy.value == 0x20


def test_policy_block_refines_an_inherited_raw_policy(tmp_path):
    text = ('template "t" {\n    policy 0x0018_000B\n}\nvm "v" extends "t" {\n    firmware "f"\n'
            '    policy {\n        debug allow\n        send-to-non-sev deny\n    }\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": text}).vms
    assert v.policy.value == (0x0018000B & ~0x1) | 0x20


def test_raw_policy_in_the_middle_of_a_chain(tmp_path):
    text = ('template "g" {\n    policy {\n        send deny\n    }\n}\n'
            'template "p" extends "g" {\n    policy 0x3\n}\n'
            'vm "v" extends "p" {\n    firmware "f"\n    policy {\n        min-api 0.24\n    }\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": text}).vms
    assert v.policy.value == 0x3 | (24 << 24)  # send deny of "g" is replaced by 0x3


def test_type_and_es_bit_follow_the_chain(tmp_path):
    text = ('template "es" {\n    type sev-es\n    cpu "EPYC"\n    policy 0x7\n}\n'
            'vm "v" extends "es" {\n    firmware "f"\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": text}).vms
    assert v.type is GuestType.SEV_ES and v.policy.value == 0x7


def test_templates_from_imports_and_relative_paths(tmp_path):
    write(tmp_path, "lib/base.sevm", 'import "sub/deep.sevm"\n'
          'template "base" extends "deep" {\n    firmware "fw/OVMF.fd"\n'
          '    launch {\n        disk "disks/root.qcow2"\n    }\n}\n')
    write(tmp_path, "lib/sub/deep.sevm", 'template "deep" {\n    kernel "../../boot/vmlinuz"\n'
          '    initrd "initrd.img"\n}\n')
    (v,) = compiled(tmp_path, {"images/web.sevm": 'import "../lib/base.sevm"\n'
                                                  'vm "web" extends "base" {\n    cmdline "ro"\n}\n'},
                    root="images/web.sevm").vms
    assert v.firmware.path == tmp_path / "lib" / "fw" / "OVMF.fd"
    assert v.firmware.written == "fw/OVMF.fd"  # as written in the file that names it
    assert v.kernel.path == tmp_path / "boot" / "vmlinuz"
    assert v.initrd.path == tmp_path / "lib" / "sub" / "initrd.img"
    assert v.launch.disks[0].resolved == tmp_path / "lib" / "disks" / "root.qcow2"
    assert v.origins["kernel"].file == str(tmp_path / "lib" / "sub" / "deep.sevm")
    assert v.file == str(tmp_path / "images" / "web.sevm")


def test_diamond_imports_load_each_file_once(tmp_path):
    write(tmp_path, "common.sevm", 'template "common" {\n    firmware "fw.fd"\n}\n')
    write(tmp_path, "a.sevm", 'import "common.sevm"\ntemplate "a" extends "common" {\n    vcpus 2\n}\n')
    write(tmp_path, "sub/b.sevm", 'import "../common.sevm"\ntemplate "b" extends "common" {\n'
                                  '    vcpus 3\n}\n')
    result = compile_files(tmp_path, {"m.sevm": 'import "a.sevm"\nimport "sub/b.sevm"\n'
                                                'import "./sub/../common.sevm"\n'
                                                'vm "x" extends "a" {\n}\nvm "y" extends "b" {\n}\n'})
    assert not errors(result), [d.message for d in result.diagnostics]
    assert [(v.name, v.vcpus) for v in result.manifest.vms] == [("x", (2,)), ("y", (3,))]
    assert sorted(result.sources.texts) == sorted(str(tmp_path / p) for p in (
        "m.sevm", "a.sevm", "sub/b.sevm", "common.sevm"))


def test_templates_of_transitive_imports_are_in_scope(tmp_path):
    write(tmp_path, "a.sevm", 'import "b.sevm"\n')
    write(tmp_path, "b.sevm", 'template "deep" {\n    vcpus 5\n}\n')
    (v,) = compiled(tmp_path, {"m.sevm": 'import "a.sevm"\nvm "v" extends "deep" {\n'
                                         '    firmware "f"\n}\n'}).vms
    assert v.vcpus == (5,)


def test_vms_of_imported_files_are_not_compiled(tmp_path):
    write(tmp_path, "other.sevm", 'vm "other" {\n    firmware "f"\n}\ntemplate "t" {\n}\n')
    manifest = compiled(tmp_path, {"m.sevm": 'import "other.sevm"\nvm "v" extends "t" {\n'
                                             '    firmware "f"\n}\n'})
    assert [v.name for v in manifest.vms] == ["v"]


def test_a_vm_cannot_be_extended(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": 'vm "a" {\n    firmware "f"\n}\n'
                                                'vm "b" extends "a" {\n}\n'})
    assert [d.message for d in errors(result)] == [
        "unknown template 'a' (templates: none in scope); templates come from this file or its imports"]


def test_vm_and_template_names_are_separate(tmp_path):
    (v,) = compiled(tmp_path, {"m.sevm": 'template "web" {\n    vcpus 2\n}\n'
                                         'vm "web" extends "web" {\n    firmware "f"\n}\n'}).vms
    assert (v.name, v.vcpus) == ("web", (2,))


def test_unused_templates_are_not_compiled(tmp_path):
    # a template is abstract: only the settings a vm ends up with are checked
    manifest = compiled(tmp_path, {"m.sevm": 'template "t" {\n    vcpus 0\n    cpu "nope"\n}\n'})
    assert manifest.vms == ()


def test_overridden_template_values_are_not_checked(tmp_path):
    (v,) = compiled(tmp_path, {"m.sevm": 'template "t" {\n    vcpus 0\n}\n'
                                         'vm "v" extends "t" {\n    firmware "f"\n    vcpus 2\n}\n'}).vms
    assert v.vcpus == (2,)


def test_inherited_errors_point_into_the_template(tmp_path):
    result = compile_files(tmp_path, {"m.sevm": 'template "t" {\n    initrd "i"\n}\n'
                                                'vm "v" extends "t" {\n    firmware "f"\n}\n'})
    (d,) = errors(result)
    assert d.message.startswith("initrd without kernel") and (d.span.line, d.span.column) == (2, 5)


def test_same_template_used_by_several_vms(tmp_path):
    text = ('template "t" {\n    firmware "f"\n    vcpus 2\n}\n'
            'vm "a" extends "t" {\n}\nvm "b" extends "t" {\n    vcpus 3\n}\n')
    assert [v.vcpus for v in compiled(tmp_path, {"m.sevm": text}).vms] == [(2,), (3,)]


def test_absolute_paths_are_used_as_written(tmp_path):
    firmware = tmp_path / "elsewhere" / "OVMF.fd"
    write(tmp_path, "lib/t.sevm", f'template "t" {{\n    firmware "{firmware}"\n}}\n')
    (v,) = compiled(tmp_path, {"m.sevm": 'import "lib/t.sevm"\nvm "v" extends "t" {\n}\n'}).vms
    assert v.firmware.path == firmware and v.firmware.written == str(firmware)
