"""The ``controlplane`` command: serve and migrate (serve.py), administration on the database (admin.py:
tokens, tenants, automations sync, secrets re-encrypt, config-table) and a client of a running server
(remote.py: run)."""

from __future__ import annotations

import click

from controlplane.cli import admin, remote, serve


@click.group()
def main() -> None:
    """Control plane for running scripts in hardened, single-use sandboxes."""


for command in (*serve.COMMANDS, *admin.COMMANDS, *remote.COMMANDS):
    main.add_command(command)
