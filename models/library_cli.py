"""``cloud3d models``: list, show and export bundled models (heavy imports inside)."""

from __future__ import annotations

import json

import click

from cloud3d.errors import Cloud3dError


def _hours(card: dict) -> str:
    v = card.get("cpu_hours")
    return f"{v:.2f}" if isinstance(v, int | float) and not isinstance(v, bool) else "-"


def _gpx(card: dict) -> str:
    v = card.get("gpx_seen")
    return f"{v:.2f}" if isinstance(v, int | float) and not isinstance(v, bool) else "-"


def _status(card: dict) -> str:
    """``reference`` only when the card's study figures met the targets (baselines.model_study)."""
    return "reference" if card.get("status") == "reference" else "preview"


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print every card in full, as JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the bundled models and those in the user model folder.

    STATUS is preview until a model's test-split figures (`cloud3d models study`) meet the
    targets (>= 10% fewer bytes than JPEG on every game), reference after; GPX: the
    gigapixels of training crops its weights have seen.

    The user folder is $CLOUD3D_MODEL_DIR, else $XDG_DATA_HOME/cloud3d/models (default
    ~/.local/share/cloud3d/models). Use a model by name with `cloud3d compress -m NAME` and
    `--codec learned:model=NAME` in bench; `cloud3d decompress` finds it by itself.

    \b
    Examples:
      cloud3d models
      cloud3d models show general          # once a model named general ships
      cloud3d models export runs/stk/best.pt --name stk-mine
    """
    if ctx.invoked_subcommand is not None:
        return
    from models.library import BUNDLED_DIR, scan_models, user_model_dir

    entries, problems = scan_models()
    for line in problems:
        click.echo(f"warning: skipped {line}", err=True)
    if as_json:
        click.echo(json.dumps([{"origin": e.origin, "path": str(e.path), "hidden": e.hidden,
                                "card": e.card} for e in entries], indent=1, sort_keys=True))
        return
    rows = [("NAME", "STATUS", "ORIGIN", "ARCH", "QUALITIES", "APP", "STEPS", "GPX", "CPU-H",
             "WEIGHTS")]
    for e in entries:
        c = e.card
        rows.append((e.name + (" (hidden)" if e.hidden else ""), _status(c), e.origin,
                     c["arch"], str(c["qualities"] or "fixed"), str(c.get("app", "-")),
                     str(c.get("step", "-")), _gpx(c), _hours(c), c["weights_sha256"][:12]))
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    click.echo(f"{sum(e.origin == 'bundled' for e in entries)} bundled ({BUNDLED_DIR}), "
               f"{sum(e.origin == 'user' for e in entries)} in the user folder "
               f"({user_model_dir()})")
    if any(e.hidden for e in entries):
        click.echo("(hidden): a user model with a bundled model's name; the name means the "
                   "bundled one, so rename the user model", err=True)


@models.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Print the model card of NAME (a bundled or user model) as JSON.

    \b
    Example:
      cloud3d models show stk-mine
    """
    from models.library import find_model

    click.echo(json.dumps(find_model(name).card, indent=1, sort_keys=True))


@models.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="Model name: lower-case letters, digits, . _ -")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Folder to write NAME.npz and NAME.json in [default: the user model folder].")
@click.option("--card-json", type=click.Path(dir_okay=False), default=None,
              help="JSON object of card fields to add: data, command, cpu_hours, test "
                   "numbers, description...")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True,
              help="Storage of the float parameters. float32 keeps the checkpoint's weights "
                   "hash (its streams decode with the bundle); float16 halves the file and "
                   "makes a model with its own hash.")
@click.option("--force", is_flag=True, help="Replace a model of that name in the folder.")
def export(checkpoint, name, out, card_json, dtype, force) -> None:
    """Make a bundled model (NAME.npz + NAME.json) from a CHECKPOINT of `cloud3d train`.

    \b
    Example:
      cloud3d models export runs/supertuxkart/best.pt --name supertuxkart \\
          --card-json cards/supertuxkart.json -o models/bundled
    """
    from pathlib import Path

    from models.bundle import MAX_CARD_BYTES, MAX_CARD_DEPTH, check_name, export_bundle
    from models.library import user_model_dir

    check_name(name)
    folder = Path(out) if out else user_model_dir()
    extra = None
    if card_json is not None:
        from cloud3d.untrusted import read_json

        extra = read_json(card_json, MAX_CARD_BYTES, "card JSON", MAX_CARD_DEPTH)
        if not isinstance(extra, dict):
            raise Cloud3dError(f"{card_json} must hold a JSON object of card fields")
    existing = [p for p in (folder / f"{name}.json", folder / f"{name}.npz") if p.exists()]
    if existing and not force:
        raise Cloud3dError(f"{existing[0]} exists: pick another --name or pass --force")
    card_path = export_bundle(checkpoint, name, folder, extra, dtype=dtype)
    card = json.loads(card_path.read_text())
    size = card_path.with_name(card["weights_file"]).stat().st_size
    rate = f"{card['qualities']} qualities" if card["qualities"] else "fixed-rate"
    click.echo(f"{card_path}: {card['arch']}, {rate}, {size / 1e6:.1f} MB {dtype}, "
               f"weights {card['weights_sha256'][:12]}")
