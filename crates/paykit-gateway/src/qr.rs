//! QR renderings of a `code_url`: SVG for screens, PNG for anything, text for terminals.

use paykit_core::ErrorCode;
use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

use crate::error::ApiError;

/// Medium error correction survives a smudged screen or a creased receipt.
fn code(data: &str) -> Result<QrCode, ApiError> {
    QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("cannot encode QR: {e}")))
}

pub fn svg(data: &str) -> Result<String, ApiError> {
    Ok(code(data)?.render::<svg::Color>().min_dimensions(256, 256).quiet_zone(true).build())
}

pub fn text(data: &str) -> Result<String, ApiError> {
    Ok(code(data)?.render::<unicode::Dense1x2>().quiet_zone(true).build() + "\n")
}

/// Pixels per module and the quiet zone (in modules) of the PNG.
const SCALE: usize = 8;
const QUIET: usize = 4;

pub fn png(data: &str) -> Result<Vec<u8>, ApiError> {
    let code = code(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side_u32 = u32::try_from(side).map_err(|_| ApiError::new(ErrorCode::InternalError, "QR too large"))?;
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let write = |e: png::EncodingError| ApiError::new(ErrorCode::InternalError, format!("cannot write PNG: {e}"));
    let mut writer = encoder.write_header().map_err(write)?;
    writer.write_image_data(&pixels).map_err(write)?;
    writer.finish().map_err(write)?;
    Ok(out)
}
