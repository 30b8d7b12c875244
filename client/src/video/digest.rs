//! The conformance suite's digest of decoded pictures.

use super::{Codec, DecoderChoice, Picture, VideoDecoder, VideoError};

/// SHA-1 of decoded pictures as defined by the conformance suite.
#[derive(Default)]
pub struct PictureDigest {
    hasher: sha1::Sha1,
    /// Pictures hashed.
    pub pictures: u64,
    /// Size of the last picture.
    pub size: (usize, usize),
}

impl PictureDigest {
    /// Adds a picture.
    pub fn add(&mut self, p: &Picture<'_>) {
        use sha1::Digest;
        p.for_each_row(|row| self.hasher.update(row));
        self.pictures += 1;
        self.size = (p.width, p.height);
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        use sha1::Digest;
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Decodes a whole Annex-B file and returns its digest and picture count.
pub fn digest_stream(
    data: &[u8],
    codec: Codec,
    choice: DecoderChoice,
) -> Result<PictureDigest, VideoError> {
    let mut dec = VideoDecoder::for_codec(codec, choice)?;
    let mut digest = PictureDigest::default();
    dec.decode(data, |p| digest.add(&p));
    dec.flush(|p| digest.add(&p));
    Ok(digest)
}
