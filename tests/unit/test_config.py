"""config: default < config file < variable; bad values and bad files; every variable is
read in config.py and documented in the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from findsimilar.config import SETTINGS, Config, ConfigError, load_config, log_path, setting

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No FINDSIMILAR_* variable, the XDG folders in tmp_path; returns the config file path."""
    for spec in SETTINGS.values():
        monkeypatch.delenv(spec.variable, raising=False)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return tmp_path / "xdg_config_home" / "findsimilar" / "config.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- precedence ------------------------------------------------------------------

def test_without_file_or_variables_every_setting_is_its_default(home, tmp_path):
    config = load_config()

    defaults = Config(data_dir=config.data_dir)
    assert config == Config(data_dir=defaults.data_dir, socket_path=defaults.socket_path)
    assert config.data_dir == (tmp_path / "xdg_data_home" / "findsimilar").resolve()
    assert config.config_file is None
    assert (config.model_idle, config.compress_above, config.no_daemon) == (300.0, 50_000, False)


def test_the_file_overrides_the_defaults(home, tmp_path):
    write(home, f'data_dir = "{tmp_path}/lib"\nmodel_idle = 5\ncompress_above = 10\n'
                'settle_quiet = 0.5\nno_daemon = true\nprecision = "fp32"\n'
                'extractor = "efficientnet-lite2-gem"\nclient_timeout = 3\n')

    config = load_config()

    assert config.data_dir == (tmp_path / "lib").resolve()
    assert (config.model_idle, config.compress_above, config.settle_quiet) == (5.0, 10, 0.5)
    assert (config.no_daemon, config.precision, config.client_timeout) == (True, "fp32", 3.0)
    assert config.extractor == "efficientnet-lite2-gem"
    assert config.config_file == home


def test_a_variable_wins_over_the_file(home, tmp_path, monkeypatch):
    write(home, f'data_dir = "{tmp_path}/from-file"\nmodel_idle = 5\nno_daemon = true\n')
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("FINDSIMILAR_MODEL_IDLE", "7")
    monkeypatch.setenv("FINDSIMILAR_NO_DAEMON", "0")

    config = load_config()

    assert config.data_dir == (tmp_path / "from-env").resolve()
    assert config.model_idle == 7.0 and config.no_daemon is False
    assert setting("no_daemon") is False


def test_a_bad_variable_is_ignored_and_the_file_or_default_applies(home, monkeypatch):
    write(home, "model_idle = 5\n")
    for var, value in (("FINDSIMILAR_MODEL_IDLE", "soon"), ("FINDSIMILAR_BUSY_TIMEOUT", "-1"),
                       ("FINDSIMILAR_SETTLE_QUIET", "nan"), ("FINDSIMILAR_COMPRESS_ABOVE", "1e3"),
                       ("FINDSIMILAR_CLIENT_TIMEOUT", "0")):
        monkeypatch.setenv(var, value)

    config = load_config()

    assert config.model_idle == 5.0  # from the file
    assert (config.busy_timeout, config.settle_quiet, config.compress_above,
            config.client_timeout) == (30.0, 2.0, 50_000, 60.0)


def test_paths_in_the_file_expand_the_home_and_variables(home, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    write(home, 'data_dir = "~/lib"\nsocket = "$XDG_RUNTIME_DIR/findsimilar/daemon.sock"\n')

    config = load_config()

    assert config.data_dir == (tmp_path / "me" / "lib").resolve()
    assert config.socket_path == tmp_path / "run" / "findsimilar" / "daemon.sock"


def test_each_data_dir_logs_to_its_own_file_in_the_state_dir(home, tmp_path):
    standard = load_config()
    state = tmp_path / "xdg_state_home" / "findsimilar"

    assert standard.log_path == state / "daemon.log"
    other = log_path(tmp_path / "elsewhere")
    assert other.parent == state and re.fullmatch(r"daemon-[0-9a-f]{8}\.log", other.name)
    assert other.stem.split("-")[1] in str(Config(data_dir=tmp_path / "elsewhere").socket_path)


# -- bad files -------------------------------------------------------------------

@pytest.mark.parametrize(("text", "words"), [
    ("model_idle = \"soon\"\n", "model_idle must be a number of seconds, 0 or more"),
    ("compress_above = -3\n", "compress_above must be a whole number of photos"),
    ("compress_above = 2.5\n", "compress_above must be a whole number of photos"),
    ("no_daemon = 1\n", "no_daemon must be true or false"),
    ("precision = \"fast\"\n", "precision must be one of auto, fp32, bf16"),
    ("data_dir = 3\n", "data_dir must be a folder"),
    ("client_timeout = 0\n", "client_timeout must be a number of seconds above 0"),
    ("modle_idle = 5\n", "unknown setting 'modle_idle'"),
    ("[daemon]\nmodel_idle = 5\n", "unknown setting 'daemon'"),
    ("model_idle = 5\n[x\n", "is not valid TOML"),
    ("model_idle = \udcff\n", "is not valid TOML"),  # a byte that is not UTF-8
])
def test_a_bad_file_is_an_error_naming_the_file_and_the_problem(home, text, words):
    home.parent.mkdir(parents=True)
    home.write_bytes(text.encode("utf-8", "surrogateescape"))

    with pytest.raises(ConfigError) as raised:
        load_config()

    assert str(home) in str(raised.value) and words in str(raised.value)
    assert raised.value.exit_code == 2


def test_a_folder_where_the_file_should_be_is_an_error_naming_it(home):
    home.mkdir(parents=True)

    with pytest.raises(ConfigError, match=re.escape(str(home))):
        load_config()


def test_the_cli_says_what_is_wrong_with_the_file_without_a_traceback(home, tmp_path):
    write(home, "model_idle = [\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(home.parent.parent),
           "FINDSIMILAR_DATA_DIR": str(tmp_path / "data")}
    for args in (["status"], ["daemon", "run"]):
        proc = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"findsimilar: error: the config file {home} is not "
                                      "valid TOML"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_changed_file_is_read_again(home):
    write(home, "model_idle = 5\n")
    assert load_config().model_idle == 5.0
    write(home, "model_idle = 6\n# longer\n")
    assert load_config().model_idle == 6.0


# -- one place, documented -----------------------------------------------------------

def environment_reads(text: str) -> list[str]:
    return re.findall(r"os\.environ\b|os\.getenv\b|os\.putenv\b", text)


def test_no_module_but_config_reads_the_environment():
    sources = [p for folder in ("findsimilar", "daemon", "cli")
               for p in (REPO / folder).rglob("*.py")]
    readers = [str(p.relative_to(REPO)) for p in sources
               if environment_reads(p.read_text()) and p != REPO / "findsimilar/config.py"]
    assert readers == []


def test_no_module_outside_storage_opens_sqlite():
    sources = [p for folder in ("findsimilar", "daemon", "cli")
               for p in (REPO / folder).rglob("*.py")]
    openers = [str(p.relative_to(REPO)) for p in sources
               if re.search(r"sqlite3\.connect|Database\(", p.read_text())
               and p.parent != REPO / "daemon" / "storage"]
    assert openers == []


def readme_environment_table() -> dict[str, str]:
    """variable -> file key, from the README's Environment table."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Environment", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 2 and cells[0].startswith("`FINDSIMILAR_"):
            variables = re.findall(r"`(FINDSIMILAR_\w+)`", cells[0])
            keys = re.findall(r"`(\w+)`", cells[1])
            rows.update(zip(variables, keys, strict=True))
    return rows


def test_every_setting_is_in_the_readme_table_with_its_file_key():
    table = readme_environment_table()

    assert {s.variable: s.key for s in SETTINGS.values()} == table


def test_every_findsimilar_variable_named_in_config_is_a_documented_setting():
    named = set(re.findall(r"FINDSIMILAR_[A-Z0-9_]+", (REPO / "findsimilar/config.py").read_text()))
    documented = set(readme_environment_table())

    assert named - {"FINDSIMILAR_"} <= documented


def test_a_relative_xdg_folder_is_ignored_as_the_spec_asks(home, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")

    assert load_config().data_dir == (tmp_path / "me" / ".local/share/findsimilar").resolve()
