"""Trigram indexes (PostgreSQL's pg_trgm, a trusted extension the database's owner may create) for the console
search box (fleet.console.search): a name, hostname or label containing the words, a code, serial or MAC
starting with them. Without them a search that matches few rows read every site and every node (150 ms at
90000 nodes). The expressions are the ones Django writes for icontains/istartswith/iexact/startswith.
Nothing on SQLite, which has no such index (a search there reads the table)."""

from typing import Any

from django.db import migrations

INDEXES = {
    "site_code_trgm": ("sites_site", 'UPPER("code"::text)'),
    "site_name_trgm": ("sites_site", 'UPPER("name"::text)'),
    "site_region_trgm": ("sites_site", 'UPPER("region"::text)'),
    "site_market_trgm": ("sites_site", "UPPER((\"labels\" ->> 'market')::text)"),
    "site_city_trgm": ("sites_site", "UPPER((\"labels\" ->> 'city')::text)"),
    "node_serial_trgm": ("sites_node", 'UPPER("serial"::text)'),
    "node_hostname_trgm": ("sites_node", 'UPPER("hostname"::text)'),
    "node_mac_trgm": ("sites_node", '("mac"::text)'),
}


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in INDEXES.items():
        index = f'"{name}" ON "{table}" USING gin (({expression}) gin_trgm_ops)'
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {index}")


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("sites", "0009_fleet_scale_indexes")]

    operations = [migrations.RunPython(create, drop)]
