"""sevmanifest: one reviewed manifest for AMD SEV / SEV-ES guests.

Library entry points (the ``sevm`` CLI is a thin layer over these):

- ``sevmanifest.frontend.compile_file(path)`` -> ``Compilation`` (model + diagnostics)
- ``sevmanifest.model`` -- the typed intermediate model every backend consumes
- ``sevmanifest.measure`` -- launch digest, launch measurement, verification
- ``sevmanifest.render`` -- QEMU command lines and libvirt XML
- ``sevmanifest.lock`` -- lock files, exports, digest cache
- ``sevmanifest.review`` -- semantic diff, explain, lint configuration
"""
