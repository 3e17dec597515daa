"""DicomConfig validation."""

from __future__ import annotations

import pytest

from hospital.imaging.api.dicom import DicomConfig, build_ae


def test_defaults_are_production_settings() -> None:
    config = DicomConfig()
    assert (config.ae_title, config.host, config.port, config.strict_ae) == (
        "HOSPITAL_PACS",
        "127.0.0.1",
        11112,
        True,
    )


def test_allow_list_is_normalised_and_read_only() -> None:
    config = DicomConfig(allowed_aes={" CT_HUE ": ("10.10.1.21", "104")})  # type: ignore[dict-item]
    assert dict(config.allowed_aes) == {"CT_HUE": ("10.10.1.21", 104)}
    with pytest.raises(TypeError):
        config.allowed_aes["MR_HUE"] = ("10.10.1.22", 104)  # type: ignore[index]


@pytest.mark.parametrize("title", ["", "   ", "A_TITLE_LONGER_THAN_16", "BỆNH_VIỆN", "BACK\\SLASH"])
def test_invalid_ae_titles_are_refused(title: str) -> None:
    with pytest.raises(ValueError):
        DicomConfig(ae_title=title)
    with pytest.raises(ValueError):
        DicomConfig(allowed_aes={title: ("10.10.1.21", 104)})


def test_ae_accepts_unlimited_pdus_and_all_storage_classes() -> None:
    ae = build_ae(DicomConfig(max_associations=8))
    assert ae.maximum_pdu_size == 0
    assert ae.maximum_associations == 8
    abstract_syntaxes = {context.abstract_syntax for context in ae.supported_contexts}
    assert "1.2.840.10008.1.1" in abstract_syntaxes  # Verification
    assert "1.2.840.10008.5.1.4.1.1.2" in abstract_syntaxes  # CT Image Storage
    assert len(abstract_syntaxes) > 150
