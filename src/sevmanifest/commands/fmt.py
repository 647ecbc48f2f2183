"""`sevm fmt` (not implemented yet)."""
from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("fmt", help="(not implemented yet)")
    parser.set_defaults(func=lambda args: 2)
