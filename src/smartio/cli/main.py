"""Entry point of the ``smartio`` command (click).

Each command group lives in its own module and only parses arguments, calls the library,
and renders results with rich; errors from the library (:class:`SmartIOError`) are printed
as one clear line and exit with status 2.
"""

from __future__ import annotations

import logging
import sys

import click

from smartio import __version__
from smartio.cli.bench import bench
from smartio.cli.cluster import cluster, link, node
from smartio.cli.demo import demo
from smartio.cli.devices import lspci, nvme
from smartio.cli.model import model
from smartio.cli.topology import topology
from smartio.errors import SmartIOError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartio")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """SmartIO on an emulated PCIe cluster: device lending and shared memory over NTBs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


cli.add_command(topology)
cli.add_command(bench)
cli.add_command(demo)
cli.add_command(cluster)
cli.add_command(node)
cli.add_command(link)
cli.add_command(lspci)
cli.add_command(nvme)
cli.add_command(model)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SmartIOError as e:
        click.echo(f"smartio: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
