//! FFmpeg's decoders (libavcodec: H.264, HEVC, AV1 through dav1d or
//! libaom), loaded when the client starts.
//!
//! Written by hand rather than through `ffmpeg-next` or `rsmpeg`: those
//! generate their bindings with bindgen and link FFmpeg when the client is
//! built, so every build would need libclang and FFmpeg's headers, and the
//! client would not start at all on a machine without FFmpeg. The decoder
//! needs eleven functions and the leading fields of two structs whose layout
//! FFmpeg has kept from version 4 (libavcodec 58) to 7 (libavcodec 61) and
//! beyond; loading them at run time lets the client use the system's FFmpeg
//! where there is one and fall back to openh264 where there is not.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use libloading::Library;

use super::{Codec, Picture};

const AV_PIX_FMT_YUV420P: c_int = 0;
const AV_PIX_FMT_YUVJ420P: c_int = 12;
const AV_LOG_QUIET: c_int = -8;
const AV_CODEC_FLAG_UNALIGNED: i64 = 1;
const EAGAIN: c_int = nephele_platform::dylib::EAGAIN;

const fn fferrtag(t: &[u8; 4]) -> c_int {
    -((t[0] as c_int) | (t[1] as c_int) << 8 | (t[2] as c_int) << 16 | (t[3] as c_int) << 24)
}
const AVERROR_EOF: c_int = fferrtag(b"EOF ");

/// libavcodec majors whose `AVPacket` and `AVFrame` start as below.
const MAJORS: std::ops::RangeInclusive<u32> = 58..=62;

/// The leading fields of `AVPacket`.
#[repr(C)]
struct PacketHead {
    buf: *mut c_void,
    pts: i64,
    dts: i64,
    data: *const u8,
    size: c_int,
}

/// The leading fields of `AVFrame`.
#[repr(C)]
struct FrameHead {
    data: [*mut u8; 8],
    linesize: [c_int; 8],
    extended_data: *mut *mut u8,
    width: c_int,
    height: c_int,
    nb_samples: c_int,
    format: c_int,
}

type Ptr = *mut c_void;

struct Api {
    version: u32,
    find_decoder: unsafe extern "C" fn(*const c_char) -> *const c_void,
    alloc_context: unsafe extern "C" fn(*const c_void) -> Ptr,
    open: unsafe extern "C" fn(Ptr, *const c_void, *mut Ptr) -> c_int,
    free_context: unsafe extern "C" fn(*mut Ptr),
    send_packet: unsafe extern "C" fn(Ptr, *const c_void) -> c_int,
    receive_frame: unsafe extern "C" fn(Ptr, Ptr) -> c_int,
    packet_alloc: unsafe extern "C" fn() -> Ptr,
    packet_free: unsafe extern "C" fn(*mut Ptr),
    frame_alloc: unsafe extern "C" fn() -> Ptr,
    frame_free: unsafe extern "C" fn(*mut Ptr),
    frame_unref: unsafe extern "C" fn(Ptr),
    opt_set_int: unsafe extern "C" fn(Ptr, *const c_char, i64, c_int) -> c_int,
    // The libraries stay loaded for the life of the process (the pointers
    // above point into them).
    _avcodec: Library,
    _avutil: Library,
}

/// The names libavcodec and its libavutil (two majors behind) go by for
/// each major version, as the platform names shared libraries.
fn library_names(major: u32) -> Vec<(String, String)> {
    use nephele_platform::dylib::file_names;
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
        let log_level: unsafe extern "C" fn(c_int) = *avutil.get(b"av_log_set_level\0")?;
        // Damaged streams make the decoder log to stderr; the client counts
        // errors itself.
        log_level(AV_LOG_QUIET);
        Ok(Api {
            version: version(),
            find_decoder: *avcodec.get(b"avcodec_find_decoder_by_name\0")?,
            alloc_context: *avcodec.get(b"avcodec_alloc_context3\0")?,
            open: *avcodec.get(b"avcodec_open2\0")?,
            free_context: *avcodec.get(b"avcodec_free_context\0")?,
            send_packet: *avcodec.get(b"avcodec_send_packet\0")?,
            receive_frame: *avcodec.get(b"avcodec_receive_frame\0")?,
            packet_alloc: *avcodec.get(b"av_packet_alloc\0")?,
            packet_free: *avcodec.get(b"av_packet_free\0")?,
            frame_alloc: *avutil.get(b"av_frame_alloc\0")?,
            frame_free: *avutil.get(b"av_frame_free\0")?,
            frame_unref: *avutil.get(b"av_frame_unref\0")?,
            opt_set_int: *avutil.get(b"av_opt_set_int\0")?,
            _avcodec: avcodec,
            _avutil: avutil,
        })
    }
}

fn api() -> Result<&'static Api, String> {
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

/// One libavcodec decoding context, single-threaded, fed one access unit
/// (AV1: temporal unit) per call.
pub struct AvDecoder {
    api: &'static Api,
    ctx: Ptr,
    packet: Ptr,
    frame: Ptr,
}

// SAFETY: a libavcodec context is not tied to the thread that made it; it is
// used by one thread at a time (`&mut self`).
unsafe impl Send for AvDecoder {}

impl std::fmt::Debug for AvDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvDecoder").finish_non_exhaustive()
    }
}

/// What one call gave.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Pictures produced.
    pub pictures: u64,
    /// The decoder refused the data or a picture was unusable.
    pub corrupt: bool,
}

impl AvDecoder {
    /// Opens a decoder of `codec`, or says why FFmpeg cannot be used.
    pub fn new(codec: Codec) -> Result<Self, String> {
        let api = api()?;
        // Software decoders by name (libavcodec's own "av1" decodes only
        // through a hardware accelerator): dav1d first, the fastest.
        let names: &[&std::ffi::CStr] = match codec {
            Codec::H264 => &[c"h264"],
            Codec::Hevc => &[c"hevc"],
            Codec::Av1 => &[c"libdav1d", c"libaom-av1"],
        };
        // SAFETY: the calls follow libavcodec's documented set-up sequence;
        // every pointer is checked before use and freed in `Drop`.
        unsafe {
            let Some(found) = names
                .iter()
                .map(|n| (api.find_decoder)(n.as_ptr()))
                .find(|p| !p.is_null())
            else {
                return Err(format!("this FFmpeg has no {} decoder", codec.name()));
            };
            let mut me = Self {
                api,
                ctx: (api.alloc_context)(found),
                packet: (api.packet_alloc)(),
                frame: (api.frame_alloc)(),
            };
            if me.ctx.is_null() || me.packet.is_null() || me.frame.is_null() {
                return Err("FFmpeg could not allocate a decoder".into());
            }
            // One thread: frame threading would add a frame of latency per
            // thread, and the decode thread already overlaps presentation.
            (api.opt_set_int)(me.ctx, c"threads".as_ptr(), 1, 0);
            // Frame cropping exactly as the stream says: otherwise
            // libavcodec keeps a left crop's planes aligned and hands out
            // wider pictures than the stream's (the converter takes any
            // alignment).
            (api.opt_set_int)(me.ctx, c"flags".as_ptr(), AV_CODEC_FLAG_UNALIGNED, 0);
            let rc = (api.open)(me.ctx, found, std::ptr::null_mut());
            if rc < 0 {
                me.ctx_free();
                return Err(format!("opening FFmpeg's decoder failed ({rc})"));
            }
            Ok(me)
        }
    }

    fn ctx_free(&mut self) {
        // SAFETY: `free_context` accepts a pointer to a context pointer
        // (null or live) and nulls it.
        unsafe { (self.api.free_context)(&mut self.ctx) };
    }

    /// Decodes one access unit (Annex B) and calls `out` with each picture
    /// it completes.
    pub fn decode(&mut self, au: &[u8], out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        let Ok(size) = c_int::try_from(au.len()) else {
            return Outcome {
                pictures: 0,
                corrupt: true,
            };
        };
        // SAFETY: the packet is ours; it borrows `au` only for the call
        // (without `buf`, libavcodec copies the data it keeps, with its
        // padding) and is emptied again before returning.
        let rc = unsafe {
            let head = self.packet.cast::<PacketHead>();
            (*head).data = au.as_ptr();
            (*head).size = size;
            let rc = (self.api.send_packet)(self.ctx, self.packet);
            (*head).data = std::ptr::null();
            (*head).size = 0;
            rc
        };
        let mut outcome = self.drain(out);
        outcome.corrupt |= rc < 0 && rc != -EAGAIN;
        outcome
    }

    /// Signals the end of the stream and outputs the pictures still held;
    /// the decoder is then ready for a new stream.
    pub fn flush(&mut self, out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        // SAFETY: a null packet is libavcodec's end-of-stream signal.
        unsafe { (self.api.send_packet)(self.ctx, std::ptr::null()) };
        self.drain(out)
    }

    fn drain(&mut self, out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        let mut outcome = Outcome::default();
        loop {
            // SAFETY: context and frame are live; the frame is unreferenced
            // after each use.
            let rc = unsafe { (self.api.receive_frame)(self.ctx, self.frame) };
            if rc == -EAGAIN || rc == AVERROR_EOF {
                break;
            }
            if rc < 0 {
                outcome.corrupt = true;
                break;
            }
            // SAFETY: a frame just received holds planes of `height` rows at
            // its strides (cropping only moves the plane pointers inside
            // the decoder's buffers).
            match unsafe { picture(&*self.frame.cast::<FrameHead>()) } {
                Some(p) => {
                    outcome.pictures += 1;
                    out(p);
                }
                None => outcome.corrupt = true,
            }
            // SAFETY: the frame is live; `out` has returned, so nothing
            // borrows its planes.
            unsafe { (self.api.frame_unref)(self.frame) };
        }
        outcome
    }
}

/// # Safety
/// `f` must be a decoded video frame owned by libavcodec.
unsafe fn picture(f: &FrameHead) -> Option<Picture<'_>> {
    if f.format != AV_PIX_FMT_YUV420P && f.format != AV_PIX_FMT_YUVJ420P {
        return None;
    }
    let width = usize::try_from(f.width).ok()?;
    let height = usize::try_from(f.height).ok()?;
    let y_stride = usize::try_from(f.linesize[0]).ok()?;
    let uv_stride = usize::try_from(f.linesize[1]).ok()?;
    if f.linesize[2] != f.linesize[1] || f.data[..3].iter().any(|p| p.is_null()) {
        return None;
    }
    let ch = height.div_ceil(2);
    // SAFETY: per the caller, each plane holds its rows at its stride.
    unsafe {
        Some(Picture {
            width,
            height,
            y: std::slice::from_raw_parts(f.data[0], y_stride * height),
            y_stride,
            u: std::slice::from_raw_parts(f.data[1], uv_stride * ch),
            v: std::slice::from_raw_parts(f.data[2], uv_stride * ch),
            uv_stride,
        })
    }
}

impl Drop for AvDecoder {
    fn drop(&mut self) {
        // SAFETY: each free function takes a pointer to the pointer it
        // frees (null is allowed) and nulls it.
        unsafe {
            (self.api.frame_free)(&mut self.frame);
            (self.api.packet_free)(&mut self.packet);
        }
        self.ctx_free();
    }
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
        // AVPacket: buf, pts, dts, data, size; AVFrame: data[8], linesize[8],
        // extended_data, width, height, nb_samples, format (64-bit targets).
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(std::mem::offset_of!(PacketHead, data), 24);
            assert_eq!(std::mem::offset_of!(PacketHead, size), 32);
            assert_eq!(std::mem::offset_of!(FrameHead, linesize), 64);
            assert_eq!(std::mem::offset_of!(FrameHead, width), 104);
            assert_eq!(std::mem::offset_of!(FrameHead, format), 116);
        }
    }
}
