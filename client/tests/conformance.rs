//! H.264 conformance through the client's own decode path: every digest
//! matches through `nephele decode --sha1`, the same streams survive being
//! fragmented, shuffled and reassembled as on the network, and the damaged
//! streams decode without a crash or a hang.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nephele_client::video::{self, DecoderChoice, PictureDigest, VideoDecoder};
use nephele_protocol::video::{Fragmenter, Reassembler, ReassemblerConfig, ReassemblyEvent};
use nephele_protocol::wire::Message;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/h264")
}

fn expected() -> Vec<(String, String)> {
    sums(&data_dir())
}

/// `(digest, file)` for each line of `dir/SHA1SUMS`.
fn sums(dir: &Path) -> Vec<(String, String)> {
    let sums = std::fs::read_to_string(dir.join("SHA1SUMS")).expect("SHA1SUMS present");
    sums.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(sum, file)| (sum.to_string(), file.to_string()))
        .collect()
}

#[test]
fn openh264_is_built_with_its_assembly() {
    assert!(
        video::openh264_has_simd(),
        "openh264 was compiled without NASM, so it decodes about a third slower: install nasm \
         (cargo xtask setup), then `cargo clean -p openh264-sys2` and rebuild"
    );
}

#[test]
fn every_conformance_digest_matches_through_nephele_decode() {
    let cases = expected();
    assert_eq!(cases.len(), 27, "the suite has 27 streams with digests");
    let mut failures = Vec::new();
    for decoder in ["ffmpeg", "openh264"] {
        for (sum, file) in &cases {
            let out = Command::new(env!("CARGO_BIN_EXE_nephele"))
                .args(["decode", "--sha1", "--decoder", decoder])
                .arg(data_dir().join(file))
                .output()
                .expect("run nephele decode");
            assert!(
                out.status.success(),
                "{file} ({decoder}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let got = stdout.split_whitespace().next().unwrap_or("");
            if got != sum {
                failures.push(format!("{file} ({decoder}): expected {sum}, got {got}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "digest mismatches:\n{}",
        failures.join("\n")
    );
}

/// The digest and the size `nephele decode --sha1 --decoder DECODER` gives.
fn decoded(file: &Path, decoder: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nephele"))
        .args(["decode", "--sha1", "--decoder", decoder])
        .arg(file)
        .output()
        .expect("run nephele decode");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{} ({decoder}): {stderr}",
        file.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sum = stdout.split_whitespace().next().unwrap_or("").to_string();
    let size = stderr
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    (sum, size)
}

fn made_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/made")
}

/// The streams made with FFmpeg and its own decode's digest of each.
fn made() -> Vec<(String, String)> {
    sums(&made_dir())
}

#[test]
fn frame_cropping_is_exact_through_both_decoders() {
    // A left crop keeps its exact width through FFmpeg too (libavcodec
    // otherwise keeps the planes aligned and shows 326 columns).
    let (sum, file) = made()
        .into_iter()
        .find(|(_, f)| f == "left-crop.264")
        .expect("left-crop.264 in SHA1SUMS");
    for decoder in ["ffmpeg", "openh264"] {
        let got = decoded(&made_dir().join(&file), decoder);
        assert_eq!(got, (sum.clone(), "300x282".to_string()), "{decoder}");
    }
}

#[test]
fn hevc_and_av1_decode_to_ffmpegs_own_digest() {
    let made = made();
    for ext in ["265", "ivf"] {
        let (sum, file) = made
            .iter()
            .find(|(_, f)| f.ends_with(ext))
            .unwrap_or_else(|| panic!("no .{ext} stream in SHA1SUMS"));
        let got = decoded(&made_dir().join(file), "auto");
        assert_eq!(got, (sum.clone(), "320x180".to_string()), "{file}");
    }
    // openh264 is H.264's alone, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_nephele"))
        .args(["decode", "--sha1", "--decoder", "openh264"])
        .arg(made_dir().join("testsrc2.265"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("openh264 decodes H.264 only, not HEVC"),
        "{err}"
    );
}

/// Each access unit travels as one frame, as a host sends them: fragmented
/// into small datagrams, shuffled within a window of frames, reassembled,
/// then decoded.
fn digest_over_network(data: &[u8], seed: u64, choice: DecoderChoice) -> String {
    let mut frag = Fragmenter::new(200);
    let t0 = Instant::now();
    let mut reasm = Reassembler::new(ReassemblerConfig::default(), t0);
    let mut dec = VideoDecoder::with(choice).unwrap();
    let mut digest = PictureDigest::default();
    let nals: Vec<&[u8]> = video::access_units(data).collect();
    let mut rng = seed | 1;
    for window in nals.chunks(4) {
        let mut dgrams = Vec::new();
        for nal in window {
            frag.fragment(nal, true, 0, 0.0, |d: &[u8]| dgrams.push(d.to_vec()));
        }
        for i in (1..dgrams.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            dgrams.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for d in &dgrams {
            let Message::Video(f) = Message::decode(d).unwrap() else {
                panic!("not video")
            };
            reasm.handle_fragment(&f, t0).unwrap();
        }
        while let Some(ev) = reasm.poll(t0) {
            match ev {
                ReassemblyEvent::Frame(f) => {
                    dec.decode(&f.data, |p| digest.add(&p));
                    reasm.recycle(f.data);
                }
                ReassemblyEvent::Lost { frame_id, .. } => {
                    panic!("frame {frame_id} lost on a lossless link")
                }
            }
        }
    }
    dec.flush(|p| digest.add(&p));
    digest.finish()
}

#[test]
fn reassembled_streams_give_the_same_digests_with_either_decoder() {
    for choice in [DecoderChoice::Ffmpeg, DecoderChoice::Openh264] {
        for (i, (sum, file)) in expected().iter().enumerate() {
            let data = std::fs::read(data_dir().join(file)).unwrap();
            assert_eq!(
                &digest_over_network(&data, i as u64 + 7, choice),
                sum,
                "{file} through {choice:?}"
            );
        }
    }
}

#[test]
fn damaged_streams_decode_without_crash_or_hang() {
    let dir = data_dir().join("damaged");
    let mut n = 0;
    let runs = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| {
            let path = e.unwrap().path();
            ["ffmpeg", "openh264"].map(|d| (path.clone(), d))
        })
        .collect::<Vec<_>>();
    for (path, decoder) in runs {
        n += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_nephele"))
            .args(["decode", "--sha1", "--decoder", decoder])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} hung ({decoder})", path.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "{} crashed ({decoder}): {status}",
            path.display()
        );
    }
    assert_eq!(n, 6, "three damaged streams, two decoders");
}

/// Setup installs FFmpeg's libavcodec; the client must then find and use it
/// by default (and say which decoder it used).
#[test]
fn the_default_decoder_is_ffmpegs_where_the_system_has_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_nephele"))
        .args(["decode", "--bench"])
        .arg(data_dir().join("BA_MW_D.264"))
        .output()
        .expect("run nephele decode");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains("\"summary\""))
        .expect("a summary line");
    assert!(
        summary.contains("\"decoder\":\"ffmpeg\""),
        "libavcodec not found or not usable ({:?}); summary: {summary}",
        nephele_client::video::ffmpeg_available()
    );
    assert!(summary.contains("\"errors\":0"), "{summary}");
}

/// Access units as a host sends them: parameter sets with the picture that
/// follows, every slice of a picture together.
#[test]
fn streams_split_into_access_units_one_per_picture() {
    for (file, pictures) in [
        ("BA_MW_D.264", 100),
        ("SVA_BA2_D.264", 17),
        ("CI1_FT_B.264", 291),
    ] {
        let data = std::fs::read(data_dir().join(file)).unwrap();
        let units: Vec<&[u8]> = video::access_units(&data).collect();
        assert_eq!(units.len(), pictures, "{file}");
        // Contiguous, in order, to the end of the stream.
        let at = |u: &[u8]| u.as_ptr() as usize - data.as_ptr() as usize;
        for pair in units.windows(2) {
            assert_eq!(at(pair[0]) + pair[0].len(), at(pair[1]), "{file}");
        }
        let last = units.last().unwrap();
        assert_eq!(at(last) + last.len(), data.len(), "{file}");
        assert!(at(units[0]) <= 1, "{file}: starts at the first start code");
    }
}
