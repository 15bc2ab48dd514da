//! The few DER walks TLS needs beyond what the parsers give: an element's tag, content and
//! the bytes after it.

/// A DER element: its tag, its content, the whole element (header and content), and the
/// bytes after it.
pub type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The DER element at the start of `d`. `None` if it is truncated or its length is not
/// definite and at most 4 bytes long.
pub fn element(d: &[u8]) -> Option<Element<'_>> {
    let (&tag, after_tag) = d.split_first()?;
    let (&l0, after_len0) = after_tag.split_first()?;
    let (len, body) = if l0 < 0x80 {
        (l0 as usize, after_len0)
    } else {
        let n = (l0 & 0x7F) as usize;
        if n == 0 || n > 4 || after_len0.len() < n {
            return None;
        }
        (after_len0[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), &after_len0[n..])
    };
    if body.len() < len {
        return None;
    }
    let header = d.len() - body.len();
    Some((tag, &body[..len], &d[..header + len], &body[len..]))
}

/// A certificate's parts: the raw tbsCertificate (header included), the signature
/// algorithm's content, and the signature (the BIT STRING's bits).
pub fn certificate_parts(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (0x30, content, ..) = element(cert)? else { return None };
    let (0x30, _, tbs, rest) = element(content)? else { return None };
    let (0x30, alg, _, rest) = element(rest)? else { return None };
    let (0x03, bits, ..) = element(rest)? else { return None };
    let (&0, sig) = bits.split_first()? else { return None };
    Some((tbs, alg, sig))
}

/// A SubjectPublicKeyInfo's algorithm content and key bits.
pub fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, content, ..) = element(spki)? else { return None };
    let (0x30, alg, _, rest) = element(content)? else { return None };
    let (0x03, bits, ..) = element(rest)? else { return None };
    let (&0, key) = bits.split_first()? else { return None };
    Some((alg, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_their_limits() {
        assert_eq!(
            element(&[0x04, 2, 7, 8, 9]),
            Some((4, &[7u8, 8][..], &[4u8, 2, 7, 8][..], &[9u8][..]))
        );
        assert_eq!(
            element(&[0x04, 0x81, 1, 5]),
            Some((4, &[5u8][..], &[4u8, 0x81, 1, 5][..], &[][..]))
        );
        assert_eq!(element(&[0x04, 3, 1]), None, "truncated");
        assert_eq!(element(&[0x04, 0x80]), None, "indefinite length");
        assert_eq!(element(&[0x04, 0x85, 1, 1, 1, 1, 1]), None, "length of 5 bytes");
        assert_eq!(element(&[]), None);
        assert_eq!(certificate_parts(&[0x30, 0]), None);
    }
}
