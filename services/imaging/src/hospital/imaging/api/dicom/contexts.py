"""Presentation contexts offered by the PACS gateway.

When a peer proposes several transfer syntaxes for one abstract syntax,
pynetdicom accepts the first one in *our* list that the peer also proposed.
The order below therefore matters: uncompressed first (no transcoding work on
the modality), then lossless compressions, and lossy ones last, so that we
never make a modality lossy-compress an image it could have sent losslessly.
Lossy syntaxes are still accepted for data that is already lossy (ultrasound
cine, endoscopy video): whatever is accepted is stored exactly as sent.
"""

from __future__ import annotations

from typing import cast

from pydicom import uid
from pynetdicom import AllStoragePresentationContexts, VerificationPresentationContexts
from pynetdicom.ae import ApplicationEntity

STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.RLELossless,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.HTJ2K,
    uid.MPEG2MPML,
    uid.MPEG2MPHL,
    uid.MPEG4HP41,
    uid.MPEG4HP41BD,
    uid.MPEG4HP422D,
    uid.MPEG4HP423D,
    uid.MPEG4HP42STEREO,
    uid.HEVCMP51,
    uid.HEVCM10P51,
    # Retired (PS3.5 A.3) but still emitted by old modalities.
    uid.ExplicitVRBigEndian,
)

VERIFICATION_TRANSFER_SYNTAXES: tuple[str, ...] = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)


def add_verification_contexts(ae: ApplicationEntity) -> None:
    for context in VerificationPresentationContexts:
        ae.add_supported_context(cast(str, context.abstract_syntax), list(VERIFICATION_TRANSFER_SYNTAXES))


def add_storage_contexts(ae: ApplicationEntity) -> None:
    """Accept every storage SOP class pynetdicom knows, in all listed transfer syntaxes."""
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(cast(str, context.abstract_syntax), list(STORAGE_TRANSFER_SYNTAXES))
