//! Checksums: the fast path equals the RFC 1071 scalar sum for any bytes
//! at any start offset, and the batch finaliser leaves frames whose
//! checksums verify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::checksum::{self, ChecksumJob, ChecksumOffsets};

fuzz_target!(|data: &[u8]| {
    let want = checksum::sum_scalar(data);
    assert_eq!(checksum::sum(data), want);
    assert_eq!(checksum::sum_portable(data), want);
    if let Some((_, rest)) = data.split_first() {
        assert_eq!(checksum::sum(rest), checksum::sum_scalar(rest));
    }
    // Treat the input as an IPv4 packet (no Ethernet header) and finalise it.
    let Ok(offsets) = ChecksumOffsets::for_ipv4(data, 0) else {
        return;
    };
    let mut frame = data.to_vec();
    let mut jobs = [ChecksumJob {
        frame: &mut frame,
        offsets,
    }];
    assert_eq!(checksum::finalize_batch(&mut jobs), 0);
    let ihl = ((frame[0] & 0x0f) as usize) * 4;
    assert_eq!(checksum::sum_scalar(&frame[..ihl]), 0xffff);
    let l4 = &frame[offsets.l4_start..offsets.l4_end];
    assert_eq!(
        checksum::add(offsets.pseudo, checksum::sum_scalar(l4)),
        0xffff
    );
});
