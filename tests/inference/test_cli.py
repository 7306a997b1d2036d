from __future__ import annotations

from typer.testing import CliRunner

from terrafix.app.cli import app


def test_models_commands_have_help() -> None:
    for args in (["models", "--help"], ["models", "build", "--help"],
                 ["models", "list", "--help"], ["vps", "--help"],
                 ["vps", "provision", "--help"]):
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0, (args, out.output)
        assert "Usage" in out.output


def test_models_build_is_idempotent_and_list_is_strict(tmp_path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["models", "build", "--cache", str(tmp_path), "--size", "96x64"])
    assert out.exit_code == 0, out.output
    assert "max |ORT - torch|" in out.output
    again = runner.invoke(app, ["models", "build", "--cache", str(tmp_path), "--size", "96x64"])
    assert again.exit_code == 0 and "already built" in again.output
    listed = runner.invoke(app, ["models", "list", "--cache", str(tmp_path)])
    assert "xfeat-backbone" in listed.output and "96x64" in listed.output
    (tmp_path / "junk.onnx").write_bytes(b"")
    bad = runner.invoke(app, ["models", "list", "--cache", str(tmp_path)])
    assert bad.exit_code == 1 and "junk.onnx" in bad.output
    wrong = runner.invoke(app, ["models", "build", "--cache", str(tmp_path), "--size", "96"])
    assert wrong.exit_code != 0
