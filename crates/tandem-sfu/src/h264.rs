//! The picture width in an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1),
//! sans-IO. The SFU reads it from the SPS that starts each keyframe, so a subscriber's
//! `max_width` bounds H.264 simulcast layers as it does VP8 ones.

/// The cropped picture width an SPS NAL unit (header byte included) announces.
pub fn sps_width(nal: &[u8]) -> Option<u32> {
    if nal.first()? & 0x1f != 7 {
        return None;
    }
    let rbsp = unescape(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()?.min(255) {
                r.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = r.ue()?.checked_add(1)?;
    r.ue()?; // pic_height_in_map_units_minus1
    if r.bits(1)? == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag (frame_mbs_only_flag was 0)
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let mut crop = 0;
    if r.bits(1)? == 1 {
        let (left, right) = (r.ue()?, r.ue()?);
        // Horizontal crop units are chroma samples for 4:2:0 and 4:2:2.
        let unit = if matches!(chroma_format_idc, 1 | 2) {
            2
        } else {
            1
        };
        crop = left.checked_add(right)?.checked_mul(unit)?;
    }
    width_in_mbs.checked_mul(16)?.checked_sub(crop)
}

/// Skips a scaling list of `size` entries (7.3.2.1.1.1).
fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Drops the emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.bit / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.bit % 8)) & 1);
            self.bit += 1;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb (9.1); values past 32 bits are refused.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// Signed Exp-Golomb (9.1.1).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes Exp-Golomb fields, to build SPSs the tests need.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<u8>,
    }

    impl BitWriter {
        fn bits(&mut self, v: u32, n: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.bits.push(((v >> i) & 1) as u8);
            }
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.bits(0, len - 1).bits(x, len)
        }
        fn bytes(&self) -> Vec<u8> {
            let mut b: Vec<u8> = self
                .bits
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0, |a, (i, bit)| a | bit << (7 - i))
                })
                .collect();
            b.push(0x80); // rbsp trailing bits
            b
        }
    }

    /// Constrained baseline, 4:2:0, poc type 2, with or without cropping.
    fn baseline_sps(width_mbs: u32, crop: Option<(u32, u32)>) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(66, 8).bits(0xc0, 8).bits(31, 8);
        w.ue(0).ue(0).ue(2).ue(1).bits(0, 1);
        w.ue(width_mbs - 1).ue(10).bits(1, 1).bits(1, 1);
        match crop {
            Some((l, r)) => {
                w.bits(1, 1).ue(l).ue(r).ue(0).ue(0);
            }
            None => {
                w.bits(0, 1);
            }
        }
        w.bits(0, 1); // vui_parameters_present_flag
        let mut nal = vec![0x67];
        nal.extend(w.bytes());
        nal
    }

    #[test]
    fn baseline_width_with_and_without_cropping() {
        assert_eq!(sps_width(&baseline_sps(20, None)), Some(320));
        assert_eq!(sps_width(&baseline_sps(40, None)), Some(640));
        // 1920 wide is coded as 121 macroblocks (1936), cropped by 8 chroma units.
        assert_eq!(sps_width(&baseline_sps(121, Some((0, 8)))), Some(1920));
    }

    #[test]
    fn high_profile_sps_from_an_encoder() {
        // x264, High@3.1, 1280x720; contains emulation-prevention bytes.
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ];
        assert_eq!(sps_width(&sps), Some(1280));
    }

    #[test]
    fn not_an_sps_or_truncated() {
        assert_eq!(sps_width(&[0x65, 0x88, 0x84]), None, "IDR slice");
        let sps = baseline_sps(40, None);
        for n in 0..sps.len() - 2 {
            assert_eq!(sps_width(&sps[..n]), None, "prefix {n}");
        }
        assert_eq!(sps_width(&[0x67, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
