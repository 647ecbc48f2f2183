"""`sevm explain` (not implemented yet)."""
from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("explain", help="(not implemented yet)")
    parser.set_defaults(func=lambda args: 2)
