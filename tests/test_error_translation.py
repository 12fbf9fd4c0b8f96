"""One error translator for every command (`ppt_tools.core.arguments.run_command`): bad input is one
`<prog>: error: <message>` line and exit code 2, a failure that is not bad input (the Hub unreachable) one line and
exit code 1, and no message repeats a huge value from a file at full length."""

from __future__ import annotations

import json

import pytest

from helpers import train_script
from model_fixtures import tiny_model
from ppt_tools import benchmark
from ppt_tools.analysis import __main__ as analysis
from ppt_tools.core.arguments import run_command
from ppt_tools.core.errors import MAX_MESSAGE_CHARACTERS, CommandFailure, one_line
from ppt_tools.core.preprocessing import whole_image_processor
from ppt_tools.export import onnx as onnx_export
from ppt_tools.export import publish


def test_one_line_joins_the_lines_and_cuts_a_huge_message():
    assert one_line(ValueError("first\n   second\n\n")) == "first second"
    assert one_line(KeyError()) == "KeyError"
    huge = ValueError("tokens_removed=" + repr(list(range(200_000))) + " is not valid: give one int")
    text = one_line(huge)
    assert len(text) <= MAX_MESSAGE_CHARACTERS + 60, len(text)
    assert text.startswith("tokens_removed=[0, 1, 2") and text.endswith("is not valid: give one int")
    assert "characters left out" in text


def test_a_failure_that_is_not_bad_input_is_one_line_and_exit_code_1(capsys):
    def upload():
        raise CommandFailure("Could not reach the Hub at http://127.0.0.1:9\nretry with --upload_only")

    assert run_command("ppt-publish", upload) == 1
    assert capsys.readouterr().err == ("ppt-publish: error: Could not reach the Hub at http://127.0.0.1:9 retry with "
                                       "--upload_only\n")
    assert issubclass(publish.HubPushError, CommandFailure)


def _commands():
    train = train_script()
    commands = {
        "train.py": lambda folder, out: train.cli(
            ["--model_name_or_path", str(folder), "--dataset_name", "digits", "--output_dir", str(out)]),
        "benchmark.py": lambda folder, out: benchmark.main(
            ["--model_name_or_path", str(folder), "--cost_only", "--no_stock", "--no_progress", "--output_dir", str(out)]),
        "ppt_analysis policy-stats": lambda folder, out: analysis.main(
            ["policy-stats", "--model_name_or_path", str(folder), "--num_samples", "2", "--no_progress",
             "--output_dir", str(out)]),
        "ppt-publish": lambda folder, out: publish.main(
            ["--model_name_or_path", str(folder), "--hub_model_id", "someone/tiny", "--dry_run", "--output_dir", str(out)]),
        "ppt-export-onnx": lambda folder, out: onnx_export.main(
            ["--model_name_or_path", str(folder), "--output_file", str(folder.parent / "model.onnx")]),
    }
    try:
        from ppt_tools import demo
    except ImportError:  # the demo extra (gradio) is not installed
        return commands
    commands["ppt-demo"] = lambda folder, out: demo.main(["--model_name_or_path", str(folder)])
    return commands


COMMANDS = _commands()


@pytest.mark.parametrize("prog", sorted(COMMANDS))
@pytest.mark.parametrize("damage, expected", [
    # a config.json listing a million values: refused, naming the field, in a message of bounded length
    ({"tokens_removed": list(range(10**6))}, "tokens_removed=[0, 1, 2"),
    # a config.json asking for 100,000 layers: refused before any weight is allocated
    ({"num_hidden_layers": 100_000}, "num_hidden_layers must be a positive int <= 256"),
    # a field of the wrong type (transformers' strict config): bad input too
    ({"hidden_size": "32"}, "hidden_size"),
])
def test_every_command_reports_bad_input_as_one_line_and_exit_code_2(tmp_path, capsys, prog, damage, expected):
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    whole_image_processor(32, [0.5] * 3, [0.5] * 3).save_pretrained(folder)  # publish exports it
    config = json.loads((folder / "config.json").read_text())
    config.update(damage)
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    code = COMMANDS[prog](folder, tmp_path / "out")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert lines[-1].startswith(f"{prog}: error: ") and expected in lines[-1], lines[-1][:2000]
    assert sum(": error: " in line for line in lines) == 1 and "Traceback" not in err
    assert len(lines[-1]) <= MAX_MESSAGE_CHARACTERS + 100, len(lines[-1])
    assert not (tmp_path / "out").exists()
