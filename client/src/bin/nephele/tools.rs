//! `nephele decode` and `nephele config`: the decode path on a file, and
//! the settings file shown.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use nephele_client::config::{self, Loaded};
use nephele_client::video::{self, DecoderChoice, Presenter, VideoDecoder};

use crate::cli::DecodeArgs;

pub(crate) fn show_config(path: Option<&Path>, loaded: &Loaded) -> Result<()> {
    match (&loaded.path, path) {
        (Some(p), _) => println!("# read from {}", p.display()),
        (None, Some(p)) => println!("# {} does not exist: the defaults", p.display()),
        (None, None) => println!("# no config directory on this system: the defaults"),
    }
    if let Some(d) = config::log_dir() {
        println!("# logs go to {}", d.join("nephele.log").display());
    }
    if let Some(p) = nephele_client::config::last_session_path() {
        println!(
            "# the last session's figures and latency receipt: {}",
            p.display()
        );
    }
    for key in &loaded.unknown {
        println!("# unknown key ignored: {key}");
    }
    print!(
        "{}",
        toml::to_string_pretty(&loaded.settings).context("printing the settings")?
    );
    Ok(())
}

pub(crate) fn decode(a: DecodeArgs) -> Result<()> {
    let data = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let codec = a
        .codec
        .codec()
        .unwrap_or_else(|| video::codec_of_file(&a.file));
    if a.sha1 && !a.bench {
        let digest = video::digest_stream(&data, codec, a.decoder)?;
        let pictures = digest.pictures;
        let (w, h) = digest.size;
        println!("{}  {}", digest.finish(), a.file.display());
        eprintln!("{pictures} pictures, {w}x{h}");
        return Ok(());
    }
    let mut dec = VideoDecoder::for_codec(codec, a.decoder)?;
    if dec.backend() == DecoderChoice::Openh264 && !video::openh264_has_simd() {
        eprintln!(
            "warning: openh264 in this binary was built without its x86 assembly (NASM was missing); run `cargo clean -p openh264-sys2` and rebuild"
        );
    }
    let mut presenter = Presenter::default();
    let mut surface = vec![0u32; a.scale.map_or(0, |(w, h)| w as usize * h as usize)];
    let mut digest = video::PictureDigest::default();
    let mut decode_ms: Vec<f64> = Vec::new();
    let mut convert_ms: Vec<f64> = Vec::new();
    let (mut converted_px, mut total_px) = (0.0f64, 0.0f64);
    let mut on_picture = |p: video::Picture<'_>, since: Instant| {
        let d = video::ms_between(since, Instant::now());
        let t = Instant::now();
        if let Err(e) = presenter.convert(&p) {
            eprintln!("conversion failed: {e:?}");
        }
        if let Some((w, h)) = a.scale {
            presenter.blit(&mut surface, w, h);
        }
        let c = video::ms_between(t, Instant::now());
        converted_px += presenter.converted_pixels() as f64;
        total_px += (p.width * p.height) as f64;
        if a.sha1 {
            digest.add(&p);
        }
        if a.bench {
            println!(
                "{{\"frame\":{},\"width\":{},\"height\":{},\"decode_ms\":{d:.3},\"convert_ms\":{c:.3}}}",
                decode_ms.len(),
                p.width,
                p.height
            );
        }
        decode_ms.push(d);
        convert_ms.push(c);
    };
    // One access unit per call (what the network delivers), so each
    // picture's decode time is its own.
    video::for_each_unit(codec, &data, |au| {
        let t0 = Instant::now();
        dec.decode(au, |p| on_picture(p, t0));
    });
    let t0 = Instant::now();
    dec.flush(|p| on_picture(p, t0));
    let n = decode_ms.len().max(1) as f64;
    let total_d: f64 = decode_ms.iter().sum();
    let total_c: f64 = convert_ms.iter().sum();
    println!(
        "{{\"summary\":true,\"pictures\":{},\"decode_ms_mean\":{:.3},\"convert_ms_mean\":{:.3},\"total_ms_mean\":{:.3},\"converted_pct\":{:.1},\"decoder\":\"{}\",\"openh264_simd\":{},\"errors\":{}}}",
        decode_ms.len(),
        total_d / n,
        total_c / n,
        (total_d + total_c) / n,
        100.0 * converted_px / total_px.max(1.0),
        dec.backend().name(),
        video::openh264_has_simd(),
        dec.stats().errors
    );
    Ok(())
}
