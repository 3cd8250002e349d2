import json

import pytest

from reskeras.specs import (ArchSpec, default_family, get_spec, list_models, resolve_spec,
                            scale, valid_depths)


def test_registry_has_the_named_rows_of_both_papers():
    names = set(list_models())
    for depth in (20, 32, 44, 56, 110, 164, 1001, 1202, 18, 34, 50, 101, 152):
        assert f"resnet{depth}" in names and f"plain{depth}" in names
    assert "resnet200_imagenet" in names
    assert len(names) == 28


@pytest.mark.parametrize("name, family, block, depths, widths", [
    ("resnet20", "cifar", "basic", (3, 3, 3), (16, 32, 64)),
    ("plain56", "cifar", "basic", (9, 9, 9), (16, 32, 64)),
    ("resnet110", "cifar", "basic", (18, 18, 18), (16, 32, 64)),
    ("resnet164", "cifar", "bottleneck", (18, 18, 18), (16, 32, 64)),
    ("resnet1001", "cifar", "bottleneck", (111, 111, 111), (16, 32, 64)),
    ("resnet18", "imagenet", "basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    ("plain34", "imagenet", "basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    ("resnet50", "imagenet", "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512)),
    ("resnet152", "imagenet", "bottleneck", (3, 8, 36, 3), (64, 128, 256, 512)),
])
def test_rows(name, family, block, depths, widths):
    spec = get_spec(name)
    assert (spec.family, spec.block, spec.depths, spec.widths) == (family, block, depths, widths)
    assert spec.residual is name.startswith("resnet")
    assert spec.shortcut == ("A" if family == "cifar" else "B")
    assert spec.name == name


def test_default_family_and_cifar_override():
    assert [default_family(d) for d in (18, 34, 50, 101, 152, 20, 56, 200)] == \
        ["imagenet"] * 5 + ["cifar"] * 3
    spec = resolve_spec(50, family="cifar")
    assert (spec.block, spec.depths, spec.name) == ("basic", (8, 8, 8), "resnet50_cifar")


def test_block_choice_for_depths_valid_for_both_blocks():
    assert resolve_spec(110).block == "basic"
    assert resolve_spec(164).block == "bottleneck"
    assert resolve_spec(110, block="bottleneck").depths == (12, 12, 12)
    assert resolve_spec(29).block == "bottleneck"  # 9n+2 only


def test_names_carry_every_non_default_choice():
    spec = resolve_spec(20, width=32, version="v2", shortcut="B", batch_norm=False)
    assert spec.name == "resnet20_v2_B_w32_nobn"
    assert resolve_spec(56, zero_init_residual=True).name == "resnet56_zeroinit"
    assert resolve_spec(20, residual=False, shortcut="C").name == "plain20"


def test_config_round_trip_through_json():
    spec = resolve_spec(44, width=24, version="v2", shortcut="C", batch_norm=False)
    restored = ArchSpec.from_config(json.loads(json.dumps(spec.to_config())))
    assert restored == spec


def test_scale_changes_only_depth_and_width():
    spec = resolve_spec(20, version="v2", shortcut="B", residual=False)
    scaled = scale(spec, depth=56, width=32)
    assert scaled.depths == (9, 9, 9) and scaled.widths == (32, 64, 128)
    assert scaled.stem_width == 32
    assert (scaled.version, scaled.shortcut, scaled.residual) == ("v2", "B", False)
    assert scale(spec) is spec
    assert scale(get_spec("resnet50"), width=32).widths == (32, 64, 128, 256)


def test_scale_keeps_the_block_type():
    assert resolve_spec(26).block == "basic"  # 26 is 6n+2 but not 9n+2
    with pytest.raises(ValueError, match=r"9n\+2 .* block='bottleneck'. Received: depth=26"):
        scale(get_spec("resnet164"), depth=26)


def test_depth_property_counts_weighted_layers():
    assert [get_spec(n).depth for n in ("resnet20", "resnet164", "resnet50", "plain1202")] == \
        [20, 164, 50, 1202]


def test_valid_depths():
    assert valid_depths("imagenet") == [18, 34, 50, 101, 152, 200]
    assert valid_depths("cifar", "basic", limit=60) == [8, 14, 20, 26, 32, 38, 44, 50, 56]
    assert valid_depths("cifar", "bottleneck", limit=40) == [11, 20, 29, 38]
