//! FFmpeg's libavcodec, loaded when first asked for: the client's
//! decoders (H.264, HEVC, AV1 through dav1d or libaom) and the host's
//! encoders (libx265, libaom).
//!
//! Written by hand rather than through `ffmpeg-next` or `rsmpeg`: those
//! generate their bindings with bindgen and link FFmpeg at build time, so
//! every build would need libclang and FFmpeg's headers, and the programs
//! would not start at all on a machine without FFmpeg. They need a score of
//! functions and the leading fields of two structs whose layout FFmpeg has
//! kept from version 4 (libavcodec 58) to 8 (libavcodec 62); everything
//! else is set through FFmpeg's own option API by name. Loading at run time
//! lets each program use the system's FFmpeg where there is one and fall
//! back to openh264 where there is not.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use libloading::Library;

pub mod encode;

/// `AV_PIX_FMT_YUV420P`.
pub const AV_PIX_FMT_YUV420P: c_int = 0;
/// `AV_PIX_FMT_YUVJ420P` (full range; decoders may say it).
pub const AV_PIX_FMT_YUVJ420P: c_int = 12;
const AV_LOG_QUIET: c_int = -8;
/// `AV_CODEC_FLAG_UNALIGNED`.
pub const AV_CODEC_FLAG_UNALIGNED: i64 = 1;
/// `AVERROR(EAGAIN)`.
pub const AVERROR_EAGAIN: c_int = -crate::dylib::EAGAIN;

const fn fferrtag(t: &[u8; 4]) -> c_int {
    -((t[0] as c_int) | (t[1] as c_int) << 8 | (t[2] as c_int) << 16 | (t[3] as c_int) << 24)
}
/// `AVERROR_EOF`.
pub const AVERROR_EOF: c_int = fferrtag(b"EOF ");

/// libavcodec majors whose `AVPacket` and `AVFrame` start as below.
const MAJORS: std::ops::RangeInclusive<u32> = 58..=62;

/// The leading fields of `AVPacket`.
#[repr(C)]
pub struct PacketHead {
    /// `buf`.
    pub buf: *mut c_void,
    /// `pts`.
    pub pts: i64,
    /// `dts`.
    pub dts: i64,
    /// `data`.
    pub data: *const u8,
    /// `size`.
    pub size: c_int,
    /// `stream_index`.
    pub stream_index: c_int,
    /// `flags` (`AV_PKT_FLAG_KEY` is 1).
    pub flags: c_int,
}

/// The leading fields of `AVFrame`.
#[repr(C)]
pub struct FrameHead {
    /// `data`.
    pub data: [*mut u8; 8],
    /// `linesize`.
    pub linesize: [c_int; 8],
    /// `extended_data`.
    pub extended_data: *mut *mut u8,
    /// `width`.
    pub width: c_int,
    /// `height`.
    pub height: c_int,
    /// `nb_samples`.
    pub nb_samples: c_int,
    /// `format`.
    pub format: c_int,
}

type Ptr = *mut c_void;

/// The functions used, from one loaded FFmpeg.
pub struct Api {
    /// `avcodec_version()`.
    pub version: u32,
    /// `avutil_version()`.
    pub util_version: u32,
    /// `avcodec_find_decoder_by_name`.
    pub find_decoder: unsafe extern "C" fn(*const c_char) -> *const c_void,
    /// `avcodec_find_encoder_by_name`.
    pub find_encoder: unsafe extern "C" fn(*const c_char) -> *const c_void,
    /// `avcodec_alloc_context3`.
    pub alloc_context: unsafe extern "C" fn(*const c_void) -> Ptr,
    /// `avcodec_open2`.
    pub open: unsafe extern "C" fn(Ptr, *const c_void, *mut Ptr) -> c_int,
    /// `avcodec_free_context`.
    pub free_context: unsafe extern "C" fn(*mut Ptr),
    /// `avcodec_send_packet`.
    pub send_packet: unsafe extern "C" fn(Ptr, *const c_void) -> c_int,
    /// `avcodec_receive_frame`.
    pub receive_frame: unsafe extern "C" fn(Ptr, Ptr) -> c_int,
    /// `avcodec_send_frame`.
    pub send_frame: unsafe extern "C" fn(Ptr, *const c_void) -> c_int,
    /// `avcodec_receive_packet`.
    pub receive_packet: unsafe extern "C" fn(Ptr, Ptr) -> c_int,
    /// `av_packet_alloc`.
    pub packet_alloc: unsafe extern "C" fn() -> Ptr,
    /// `av_packet_free`.
    pub packet_free: unsafe extern "C" fn(*mut Ptr),
    /// `av_packet_unref`.
    pub packet_unref: unsafe extern "C" fn(Ptr),
    /// `av_frame_alloc`.
    pub frame_alloc: unsafe extern "C" fn() -> Ptr,
    /// `av_frame_free`.
    pub frame_free: unsafe extern "C" fn(*mut Ptr),
    /// `av_frame_unref`.
    pub frame_unref: unsafe extern "C" fn(Ptr),
    /// `av_frame_get_buffer`.
    pub frame_get_buffer: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    /// `av_frame_make_writable`.
    pub frame_make_writable: unsafe extern "C" fn(Ptr) -> c_int,
    /// `av_opt_set_int`.
    pub opt_set_int: unsafe extern "C" fn(Ptr, *const c_char, i64, c_int) -> c_int,
    /// `av_opt_set`.
    pub opt_set: unsafe extern "C" fn(Ptr, *const c_char, *const c_char, c_int) -> c_int,
    // The libraries stay loaded for the life of the process (the pointers
    // above point into them).
    _avcodec: Library,
    _avutil: Library,
}

/// The names libavcodec and its libavutil (two majors behind) go by for
/// each major version, as the platform names shared libraries.
fn library_names(major: u32) -> Vec<(String, String)> {
    use crate::dylib::file_names;
    file_names("avcodec", major)
        .into_iter()
        .zip(file_names("avutil", major - 2))
        .collect()
}

fn load() -> Result<Api, String> {
    let mut tried = Vec::new();
    for (major, (codec_name, util_name)) in MAJORS
        .rev()
        .flat_map(|m| library_names(m).into_iter().map(move |n| (m, n)))
    {
        // SAFETY: loading FFmpeg runs only its libraries' initialisers,
        // which have no preconditions.
        let Ok(avutil) = (unsafe { Library::new(&util_name) }) else {
            tried.push(util_name);
            continue;
        };
        // SAFETY: as above.
        let Ok(avcodec) = (unsafe { Library::new(&codec_name) }) else {
            tried.push(codec_name);
            continue;
        };
        // SAFETY: each symbol is looked up under its C name and given the
        // signature FFmpeg declares for it in every major version above.
        return unsafe { resolve(avcodec, avutil) }
            .map_err(|e| format!("{codec_name}: {e}"))
            .and_then(|api| {
                let got = api.version >> 16;
                if got == major {
                    Ok(api)
                } else {
                    Err(format!("{codec_name} reports major version {got}"))
                }
            });
    }
    Err(format!("none of {} found", tried.join(", ")))
}

/// # Safety
/// `avcodec` and `avutil` must be FFmpeg's libraries of matching versions.
unsafe fn resolve(avcodec: Library, avutil: Library) -> Result<Api, libloading::Error> {
    // SAFETY (for every `get`): the caller passes FFmpeg's libraries; each
    // name is an FFmpeg function with the signature given.
    unsafe {
        let version: unsafe extern "C" fn() -> u32 = *avcodec.get(b"avcodec_version\0")?;
        let util_version: unsafe extern "C" fn() -> u32 = *avutil.get(b"avutil_version\0")?;
        let log_level: unsafe extern "C" fn(c_int) = *avutil.get(b"av_log_set_level\0")?;
        // Damaged streams make decoders log to stderr, and encoders log
        // their settings; the programs report what matters themselves.
        log_level(AV_LOG_QUIET);
        Ok(Api {
            version: version(),
            util_version: util_version(),
            find_decoder: *avcodec.get(b"avcodec_find_decoder_by_name\0")?,
            find_encoder: *avcodec.get(b"avcodec_find_encoder_by_name\0")?,
            alloc_context: *avcodec.get(b"avcodec_alloc_context3\0")?,
            open: *avcodec.get(b"avcodec_open2\0")?,
            free_context: *avcodec.get(b"avcodec_free_context\0")?,
            send_packet: *avcodec.get(b"avcodec_send_packet\0")?,
            receive_frame: *avcodec.get(b"avcodec_receive_frame\0")?,
            send_frame: *avcodec.get(b"avcodec_send_frame\0")?,
            receive_packet: *avcodec.get(b"avcodec_receive_packet\0")?,
            packet_alloc: *avcodec.get(b"av_packet_alloc\0")?,
            packet_free: *avcodec.get(b"av_packet_free\0")?,
            packet_unref: *avcodec.get(b"av_packet_unref\0")?,
            frame_alloc: *avutil.get(b"av_frame_alloc\0")?,
            frame_free: *avutil.get(b"av_frame_free\0")?,
            frame_unref: *avutil.get(b"av_frame_unref\0")?,
            frame_get_buffer: *avutil.get(b"av_frame_get_buffer\0")?,
            frame_make_writable: *avutil.get(b"av_frame_make_writable\0")?,
            opt_set_int: *avutil.get(b"av_opt_set_int\0")?,
            opt_set: *avutil.get(b"av_opt_set\0")?,
            _avcodec: avcodec,
            _avutil: avutil,
        })
    }
}

/// The process's FFmpeg, loaded on first use, or why there is none.
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// Which FFmpeg this process would use, or why none.
pub fn available() -> Result<String, String> {
    let v = api()?.version;
    Ok(format!(
        "libavcodec {}.{}.{}",
        v >> 16,
        (v >> 8) & 0xff,
        v & 0xff
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_ffmpegs() {
        // libavutil/error.h: AVERROR_EOF is FFERRTAG('E','O','F',' ').
        assert_eq!(AVERROR_EOF, -0x2046_4F45);
        assert_eq!(AVERROR_EOF, -541_478_725);
    }

    #[test]
    fn the_struct_heads_have_ffmpegs_offsets() {
        // AVPacket: buf, pts, dts, data, size, stream_index, flags;
        // AVFrame: data[8], linesize[8], extended_data, width, height,
        // nb_samples, format (64-bit targets).
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(std::mem::offset_of!(PacketHead, data), 24);
            assert_eq!(std::mem::offset_of!(PacketHead, size), 32);
            assert_eq!(std::mem::offset_of!(PacketHead, flags), 40);
            assert_eq!(std::mem::offset_of!(FrameHead, linesize), 64);
            assert_eq!(std::mem::offset_of!(FrameHead, width), 104);
            assert_eq!(std::mem::offset_of!(FrameHead, format), 116);
        }
    }
}
