"""Hostile configuration: whatever the file or environment holds, only ConfigError escapes."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.config import load, read_toml
from capture.errors import ConfigError

SETTING_NAMES = [
    "out",
    "layout",
    "adapters",
    "retry_max_s",
    "media_url_base",
    "syntax",
    "signing_key_file",
    "ingress_lists",
    "log_level",
    "metrics_listen",
    "nonsense",
]
VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_config_text_is_parsed_or_refused_with_config_error(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load(read_toml(path), {}, env={})
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(st.sampled_from(SETTING_NAMES), VALUES, max_size=5),
    env=st.dictionaries(
        st.sampled_from(
            ["VCON_CAPTURE_OUT", "VCON_CAPTURE_RETRY_MAX_S", "VCON_CAPTURE_LAYOUT", "VCON_CAPTURE_ADAPTERS"]
        ),
        st.text(max_size=10),
        max_size=3,
    ),
)
def test_any_setting_values_are_taken_or_refused_with_config_error(doc, env):
    try:
        load(doc, {}, env=env)
    except ConfigError as exc:
        assert exc.setting
