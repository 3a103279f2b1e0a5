import inspect

import pytest
import yaml

from pipeline import catalog
from pipeline.common import ConfigError


@pytest.fixture
def schema(root):
    return yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())


def test_schema_sections_mirror_the_registries(schema):
    """Names live in the catalog; the schema has one settings block per name, no more."""
    props = schema["properties"]
    assert set(props["models"]["properties"]) == set(catalog.MODELS)
    assert set(props["backbones"]["properties"]) == set(catalog.BACKBONES)
    assert props["models"]["additionalProperties"] is False
    assert props["backbones"]["additionalProperties"] is False


def test_every_entry_loads_and_declares_its_kind():
    for table, what, kind_attr in (
        (catalog.MODELS, "model", "takes"),
        (catalog.BACKBONES, "backbone", "kind"),
    ):
        for name, entry in table.items():
            cls = catalog.load(table, name, what)
            assert getattr(cls, kind_attr) == entry.kind, name
            assert cls.__name__ != "Model" and cls.__name__ != "Backbone", name


def test_per_fold_backbones_name_a_trainer_with_the_contract():
    from pipeline.backbones import FoldFrames

    per_fold = [name for name, entry in catalog.BACKBONES.items() if entry.per_fold]
    assert per_fold == ["fer-finetuned", "resnet-attention"]
    for name in per_fold:
        trainer = catalog.trainer(name)
        first = next(iter(inspect.signature(trainer).parameters.values()))
        assert first.name == "data" and first.annotation in (FoldFrames, "FoldFrames")
    with pytest.raises(ConfigError, match="'hog' is not trained per fold"):
        catalog.trainer("hog")


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
