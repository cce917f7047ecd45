"""`manage.py localmodel train | retrain | list`: the offline local models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.ai.trainingdata import load_examples
from workflows.errors import InvalidInput
from workflows.models import LocalModel


class Command(BaseCommand):
    help = "Train, retrain and list offline local models (local:<name>[@<version>])."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        train = sub.add_parser("train", help="train a new version from labelled JSONL or CSV")
        train.add_argument("name")
        train.add_argument(
            "file", nargs="?", help='JSONL, one {"text": ..., "label": ...} per line (or CSV)'
        )
        train.add_argument("--data", help="the data file: .csv is CSV, anything else JSONL")
        train.add_argument("--text-column", default="text", help="the text field (default text)")
        train.add_argument(
            "--label-column", default="label", help="the label field (default label)"
        )
        train.add_argument("--seed", type=int, default=0)
        retrain = sub.add_parser(
            "retrain", help="retrain on reviewers' decisions; promote only if no worse"
        )
        retrain.add_argument("name")
        sub.add_parser("list", help="list models and their held-out metrics")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "train":
            self._train(options)
        elif options["action"] == "retrain":
            self._retrain(options["name"])
        else:
            for model in LocalModel.objects.order_by("name", "-version"):
                metrics = model.metrics
                self.stdout.write(
                    f"{model} labels={','.join(model.labels)} examples={len(model.examples)} "
                    f"accuracy={metrics.get('accuracy', 0):.3f} ece={metrics.get('ece', 0):.3f}"
                )

    def _train(self, options: dict[str, Any]) -> None:
        if options["file"] and options["data"]:
            raise CommandError("give the data file once: as FILE or as --data")
        file = options["file"] or options["data"]
        if not file:
            raise CommandError("give the data file: FILE or --data FILE")
        try:
            examples = load_examples(
                file, text=options["text_column"], label=options["label_column"]
            )
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        try:
            model = services.local_model_train(
                name=options["name"],
                examples=examples,
                seed=options["seed"],
                actor=services.Actor.system("cli"),
                source={"file": Path(file).name},
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        left_out = model.source.get("left_out") or {}
        dropped = f"; left out (too few examples): {left_out}" if left_out else ""
        self.stdout.write(
            f"{model}: {len(model.examples)} examples, held-out accuracy "
            f"{model.metrics['accuracy']:.3f}, ECE {model.metrics['ece']:.3f}{dropped}"
        )

    def _retrain(self, name: str) -> None:
        try:
            result = services.local_model_retrain(name=name, actor=services.Actor.system("cli"))
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        scores = ""
        if result.current and result.candidate:
            scores = (
                f"; on {result.evaluated} evaluation items: accuracy "
                f"{result.current['accuracy']:.3f} -> {result.candidate['accuracy']:.3f}, ECE "
                f"{result.current['ece']:.3f} -> {result.candidate['ece']:.3f}"
            )
        left_out = f"; left out (too few examples): {result.left_out}" if result.left_out else ""
        self.stdout.write(
            f"{result.model} {result.outcome} ({result.reason}): "
            f"{result.decision_examples} decision examples{scores}{left_out}"
        )
