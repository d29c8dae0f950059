"""The PI parameter schema is the one declaration: configs, transformers, CLI and app agree."""

from __future__ import annotations

import dataclasses
import inspect
import os

import numpy as np
import pytest

from tgd_core.cli import build_parser
from tgd_core.commands.pi import representation_from_args
from tgd_core.core.errors import TGDError
from tgd_core.topology import PaperPersistenceImages, PaperPIConfig, schema
from tgd_core.topology.cubical import CubicalConfig, CubicalPersistence
from tgd_core.topology.pimage import PersistenceImageConfig, PersistenceImager
from tgd_core.topology.representation import (
    CubicalPIConfig,
    representation_from_dict,
    representation_from_values,
    representation_key,
)

CONFIGS = {"paper": PaperPIConfig, "cubical": CubicalConfig, "image": PersistenceImageConfig}
# transformer → (schema section, its parameters that are not PI parameters)
TRANSFORMERS = {PaperPersistenceImages: ("paper", {"output"}),
                CubicalPersistence: ("cubical", {"output", "pi"}),
                PersistenceImager: ("image", set())}


@pytest.mark.parametrize("section, config", CONFIGS.items())
def test_config_fields_and_defaults_are_the_schemas(section, config):
    assert {f.name: f.default for f in dataclasses.fields(config)} == schema.defaults(section)


@pytest.mark.parametrize("transformer, spec", TRANSFORMERS.items())
def test_transformer_parameters_are_the_schemas(transformer, spec):
    section, extra = spec
    signature = inspect.signature(transformer.__init__).parameters
    declared = {name: p.default for name, p in signature.items() if name != "self"}
    assert {k: v for k, v in declared.items() if k not in extra} == schema.defaults(section)
    assert set(transformer().get_params()) == set(declared)
    assert transformer().config == CONFIGS[section]()


def test_transformer_set_params_reaches_the_config():
    est = PaperPersistenceImages().set_params(resolution=20, threshold=0.05)
    assert est.config == PaperPIConfig(resolution=(20, 20), threshold=0.05)
    assert CubicalPersistence().set_params(homology_dimensions=[1]).config.homology_dimensions \
        == (1,)
    with pytest.raises(TGDError, match="spread must be a positive number"):
        PaperPersistenceImages(spread=-1).fit()


@pytest.mark.parametrize("bad, message", [
    ({"resolution": 0}, "resolution must be between 1 and 1024 pixels"),
    ({"max_bd": 0}, "max_bd must be a positive number"),
    ({"min_bd": 0.5}, "min_bd must be below max_bd"),
    ({"threshold": -0.1}, "threshold must be >= 0"),
])
def test_paper_config_validation(bad, message):
    with pytest.raises(TGDError, match=message):
        PaperPIConfig(**bad)


@pytest.mark.parametrize("bad, message", [
    ({"filtration": "up"}, "filtration must be 'sublevel' or 'superlevel', got 'up'"),
    ({"weight": "w"}, "weight must be 'constant', 'linear' or 'power', got 'w'"),
    ({"birth_range": (1, 0)}, "birth_range must be finite"),
    ({"power": 0}, "power must be a positive number"),
])
def test_cubical_config_validation(bad, message):
    with pytest.raises(TGDError, match=message):
        representation_from_values("cubical", {
            f"{'cubical' if k == 'filtration' else 'image'}.{k}": v for k, v in bad.items()})


def _cli(*flags):
    return representation_from_args(build_parser().parse_args(["pi", "--input", "x", *flags]))


def test_cli_flags_are_the_schemas_with_its_defaults():
    parser = build_parser()
    flags = {a for action in parser._subparsers._group_actions[0].choices["pi"]._actions
             for a in action.option_strings}
    assert {p.flag for p in schema.PARAMETERS if p.flag} <= flags
    assert _cli() == PaperPIConfig()
    assert _cli("--mode", "cubical") == CubicalPIConfig()
    # the cache keys of the defaults are those of the caches already on disk
    assert representation_key(_cli()) == "d35c8417a3d7de15"
    assert representation_key(_cli("--mode", "cubical")) == "f245e26c21af2312"


def test_cli_flags_set_their_parameters():
    rep = _cli("--mode", "cubical", "--channels", "grey", "--pi-resolution", "16", "--sampled",
               "--homology", "1", "--pers-range", "0", "0.5")
    assert rep == representation_from_dict({
        "mode": "cubical", "cubical": {"channels": "grey", "homology_dimensions": [1]},
        "image": {"resolution": [16, 16], "integrate": False, "pers_range": [0.0, 0.5]}})
    assert _cli("--resolution", "20", "--spread", "0.02") == PaperPIConfig((20, 20), 0.02)
    with pytest.raises(TGDError, match="homology_dimensions"):
        _cli("--mode", "cubical", "--homology", "2")


def test_app_controls_come_from_the_schema():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    pytest.importorskip("gradio")
    from app import topology_view as view

    keys = [c.key for c in view.CONTROLS]
    assert keys == ["resolution", "spread", "max_bd", "threshold", "homology", "filtration",
                    "channels", "construction", "sigma", "pers_max"]  # the /explore API order
    assert view.representation(*view.control_values("paper")) == PaperPIConfig()
    assert view.representation(*view.control_values("cubical")) == CubicalPIConfig()
    for control in view.CONTROLS:  # what the app offers, the engine accepts
        for p in control.params:
            for bound in (control.control.ge, control.control.le):
                if bound is not None:
                    p.check((p.default[0], bound) if control.control.high_end else bound)


def test_bounds_are_inclusive_where_the_schema_says_so():
    # per_side pixels: ge=1 and le=MAX_PIXELS are both allowed; beyond them refused
    for res in (1, schema.MAX_PIXELS):
        assert PersistenceImageConfig(resolution=res).resolution == (res, res)
        assert PaperPIConfig(resolution=(res, 3)).resolution == (res, 3)
    for res in (0, schema.MAX_PIXELS + 1):
        with pytest.raises(TGDError, match="resolution must be between 1 and 1024"):
            PersistenceImageConfig(resolution=res)
    # ge=0: a zero threshold keeps every bar of positive persistence (allowed)
    assert PaperPIConfig(threshold=0.0).threshold == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda: PersistenceImageConfig(birth_range=(0.5, 0.5)), "birth_range must be finite"),
    (lambda: PersistenceImageConfig(pers_range=(0.0, np.inf)), "pers_range must be finite"),
    (lambda: PersistenceImageConfig(birth_range=(-np.inf, 1.0)), "birth_range must be finite"),
    (lambda: CubicalConfig(homology_dimensions=()), "homology_dimensions must be a non-empty"),
    (lambda: CubicalConfig(scale=0.0), "scale must be a positive number"),
    (lambda: CubicalConfig(scale=-255.0), "scale must be a positive number"),
    (lambda: PaperPIConfig(min_bd=-np.inf), "min_bd must be a finite number"),
    (lambda: PaperPIConfig(min_bd=np.nan), "min_bd must be a finite number"),
    (lambda: PaperPIConfig(min_bd=0.3, max_bd=0.3), "min_bd must be below max_bd"),
])
def test_degenerate_values_are_refused(make, message):
    with pytest.raises(TGDError, match=message):
        make()


def test_homology_dimensions_are_kept_sorted_and_unique():
    cfg = CubicalConfig(homology_dimensions=[1, 0, 1])
    assert cfg.homology_dimensions == (0, 1) and cfg == CubicalConfig()
    assert representation_key(CubicalPIConfig(cfg)) == representation_key(CubicalPIConfig())


def test_an_unknown_output_is_refused_by_every_transformer():
    for est in (PaperPersistenceImages(output="u8"), CubicalPersistence(output="pis")):
        with pytest.raises(TGDError, match="output must be"):
            est.fit()
        with pytest.raises(TGDError, match="output must be"):
            est.transform(np.zeros((1, 4, 4, 3), np.uint8))


def test_representation_dicts_are_read_strictly():
    assert representation_from_dict({}) == PaperPIConfig()  # no mode: paper (older configs)
    assert representation_from_dict({"resolution": [20, 20]}) == PaperPIConfig((20, 20))
    with pytest.raises(TGDError, match=r"unexpected field\(s\) \['sigma'\]"):
        representation_from_dict({"mode": "cubical", "sigma": 0.1})
    with pytest.raises(TGDError, match="'cubical' must be an object"):
        representation_from_dict({"mode": "cubical", "cubical": [["channels", "grey"]]})
