//! Reads the QR code out of a photo or screenshot the wallet uploads (PNG or JPEG), so the
//! sandbox wallet can "scan" without a camera.

/// The largest picture accepted, in pixels; bigger ones are refused before decoding.
const MAX_PIXELS: u64 = 40_000_000;
/// Pictures are shrunk to about this many pixels across before looking for a code: a QR
/// on a phone photo is large, and the detector's time grows with the pixel count.
const WORK_SIDE: usize = 1600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("that file is not a PNG or JPEG picture")]
    NotAPicture,
    #[error("that picture is too large; send one under 40 megapixels")]
    TooLarge,
    #[error("no QR code could be read in that picture; try a sharper or closer one")]
    NoCode,
}

/// The text of the first QR code found in the picture.
pub fn decode_qr(bytes: &[u8]) -> Result<String, ScanError> {
    let (w, h, grey) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_grey(bytes)?
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_grey(bytes)?
    } else {
        return Err(ScanError::NotAPicture);
    };
    let (w, h, grey) = shrink(w, h, grey);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
    img.detect_grids().iter().find_map(|g| g.decode().ok().map(|(_, text)| text)).ok_or(ScanError::NoCode)
}

fn check_size(w: u64, h: u64) -> Result<(), ScanError> {
    if w == 0 || h == 0 {
        return Err(ScanError::NotAPicture);
    }
    if w * h > MAX_PIXELS {
        return Err(ScanError::TooLarge);
    }
    Ok(())
}

/// Luma of an sRGB pixel composited over white (a transparent screenshot is white paper).
fn luma(r: u8, g: u8, b: u8, a: u8) -> u8 {
    let y = (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000;
    let a = u32::from(a);
    ((y * a + 255 * (255 - a)) / 255) as u8
}

fn png_grey(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), ScanError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let header = decoder.read_header_info().map_err(|_| ScanError::NotAPicture)?;
    check_size(u64::from(header.width), u64::from(header.height))?;
    let mut reader = decoder.read_info().map_err(|_| ScanError::NotAPicture)?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or(ScanError::TooLarge)?];
    let info = reader.next_frame(&mut buf).map_err(|_| ScanError::NotAPicture)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let grey = match info.color_type {
        png::ColorType::Grayscale => px.to_vec(),
        png::ColorType::GrayscaleAlpha => px.chunks_exact(2).map(|p| luma(p[0], p[0], p[0], p[1])).collect(),
        png::ColorType::Rgb => px.chunks_exact(3).map(|p| luma(p[0], p[1], p[2], 255)).collect(),
        png::ColorType::Rgba => px.chunks_exact(4).map(|p| luma(p[0], p[1], p[2], p[3])).collect(),
        png::ColorType::Indexed => return Err(ScanError::NotAPicture),
    };
    if grey.len() != w * h {
        return Err(ScanError::NotAPicture);
    }
    Ok((w, h, grey))
}

fn jpeg_grey(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), ScanError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(|_| ScanError::NotAPicture)?;
    let info = decoder.info().ok_or(ScanError::NotAPicture)?;
    check_size(u64::from(info.width), u64::from(info.height))?;
    let px = decoder.decode().map_err(|_| ScanError::NotAPicture)?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let grey: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => px,
        jpeg_decoder::PixelFormat::RGB24 => px.chunks_exact(3).map(|p| luma(p[0], p[1], p[2], 255)).collect(),
        jpeg_decoder::PixelFormat::L16 => px.chunks_exact(2).map(|p| p[0]).collect(),
        jpeg_decoder::PixelFormat::CMYK32 => px.chunks_exact(4).map(|p| 255 - p[3]).collect(),
    };
    if grey.len() != w * h {
        return Err(ScanError::NotAPicture);
    }
    Ok((w, h, grey))
}

/// Box-averages the picture down by a whole factor so its longer side is near
/// [`WORK_SIDE`].
fn shrink(w: usize, h: usize, grey: Vec<u8>) -> (usize, usize, Vec<u8>) {
    let factor = w.max(h).div_ceil(WORK_SIDE);
    if factor <= 1 {
        return (w, h, grey);
    }
    let (sw, sh) = (w / factor, h / factor);
    let mut out = Vec::with_capacity(sw * sh);
    for y in 0..sh {
        for x in 0..sw {
            let mut sum = 0u32;
            for dy in 0..factor {
                let row = (y * factor + dy) * w + x * factor;
                sum += grey[row..row + factor].iter().map(|&p| u32::from(p)).sum::<u32>();
            }
            out.push((sum / (factor * factor) as u32) as u8);
        }
    }
    (sw, sh, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_qr_reads_back_even_when_large() {
        let url = "http://127.0.0.1:8080/q/abc.def";
        let png = crate::qr::png(url).unwrap();
        assert_eq!(decode_qr(&png).unwrap(), url);
    }

    #[test]
    fn pictures_without_a_code_or_not_pictures_are_told_apart() {
        assert_eq!(decode_qr(b"hello"), Err(ScanError::NotAPicture));
        assert_eq!(decode_qr(b"\x89PNG\r\n\x1a\ngarbage"), Err(ScanError::NotAPicture));
        assert_eq!(decode_qr(&[0xFF, 0xD8, 0xFF, 0x00]), Err(ScanError::NotAPicture));
        let blank = {
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, 64, 64);
            enc.set_color(png::ColorType::Grayscale);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[255u8; 64 * 64]).unwrap();
            w.finish().unwrap();
            out
        };
        assert_eq!(decode_qr(&blank), Err(ScanError::NoCode));
    }

    #[test]
    fn shrinking_keeps_the_average() {
        let (w, h, g) = shrink(3200, 2, vec![100; 6400]);
        assert_eq!((w, h), (1600, 1));
        assert!(g.iter().all(|&p| p == 100));
    }
}
