import importlib

import pytest
import yaml

from pipeline import catalog
from pipeline.common import ConfigError


@pytest.fixture
def schema(root):
    return yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())


def test_schema_enums_mirror_the_registries(schema):
    props = schema["properties"]
    assert set(props["models"]["propertyNames"]["enum"]) == set(catalog.MODELS)
    assert set(props["models"]["properties"]) == set(catalog.MODELS)
    assert set(props["backbones"]["propertyNames"]["enum"]) == set(catalog.BACKBONES)
    assert set(props["backbones"]["properties"]) == set(catalog.BACKBONES)
    assert set(schema["definitions"]["training"]["backbones"]["items"]["enum"]) == set(
        catalog.BACKBONES
    )


def test_every_entry_loads_and_declares_its_kind():
    for table, attr, kind_attr in (
        (catalog.MODELS, "Model", "takes"),
        (catalog.BACKBONES, "Backbone", "kind"),
    ):
        for name, entry in table.items():
            cls = getattr(importlib.import_module(entry.module), attr)
            assert getattr(cls, kind_attr) == entry.kind, name


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(
        ConfigError,
        match="unknown model 'lstm9'; known models: c3d, cnn3d_convlstm_spp, cnn_lstm_partial, gru, ",
    ):
        catalog.experiments({"backbones": {"hog": {}}, "models": {"lstm9": {}}})


def test_impossible_pairing_is_refused():
    with pytest.raises(ConfigError, match="takes pixels but backbone 'hog' gives vectors"):
        catalog.experiments(
            {"backbones": {"hog": {}, "pixels": {}}, "models": {"c3d": {"backbones": ["hog"]}}}
        )


def test_models_pair_with_every_backbone_of_their_kind_by_default():
    pairs = catalog.experiments(
        {"backbones": {"hog": {}, "pixels": {}}, "models": {"gru": {}, "c3d": None}}
    )
    assert pairs == [("gru", "hog"), ("c3d", "pixels")]


def test_default_config_validates(root, schema):
    from snakemake.utils import validate

    config = yaml.safe_load((root / "config.yaml").read_text())
    validate(config, str(root / "workflow/schemas/config.schema.yaml"))
    assert catalog.experiments(config)


@pytest.mark.parametrize("preset", ["emop3d", "zoo", "backbones"])
def test_presets_validate_over_the_demo_config(root, preset):
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((root / "config.yaml").read_text())
    update_config(config, yaml.safe_load((root / f"workflow/presets/{preset}.yaml").read_text()))
    validate(config, str(root / "workflow/schemas/config.schema.yaml"))
    pairs = catalog.experiments(config)
    if preset == "zoo":
        assert ("mstcn", "fer-minixception") in pairs and len({m for m, _ in pairs}) == 8
