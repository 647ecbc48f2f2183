"""Launch artefacts from the compiled model: QEMU argv and script, libvirt domain, user
templates (docs/rendering.md).  Jinja2 is imported only when a template is rendered."""
from .api import (Rendered, encode_output, launch_digest, qemu_command, render_libvirt,
                  render_qemu, render_template, template_context)
from .variants import select_variant, single_variant_vm

__all__ = ["Rendered", "encode_output", "launch_digest", "qemu_command", "render_libvirt",
           "render_qemu", "render_template", "template_context", "select_variant",
           "single_variant_vm"]
