//! Names of the objects the controller creates for a claim, kept within Kubernetes' length
//! limits the way upstream does: short names as they are, long ones cut and suffixed with a
//! hash of the full name so two long names never collide.

/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest Service name and label value (a DNS label).
const MAX_LABEL: usize = 63;

/// `importer-<claim>`: the importer pod of a claim.
pub fn importer_pod(claim: &str) -> String {
    joined("importer", claim, MAX_NAME)
}

/// `cdi-upload-<claim>`: the upload pod (and its TLS Secret) of a claim.
pub fn upload_pod(claim: &str) -> String {
    joined("cdi-upload", claim, MAX_NAME)
}

/// The upload pod's Service: like the pod, but a DNS label (dots become dashes, at most 63).
pub fn upload_service(claim: &str) -> String {
    joined("cdi-upload", &claim.replace('.', "-"), MAX_LABEL)
}

/// `<claim>-scratch`: the scratch claim of a worker pod.
pub fn scratch_claim(claim: &str) -> String {
    let name = format!("{claim}-scratch");
    shorten(name, MAX_NAME)
}

fn joined(prefix: &str, base: &str, max: usize) -> String {
    shorten(format!("{prefix}-{base}"), max)
}

/// `name` if it fits in `max`, else its first characters, a dash and 8 hex digits of its hash.
fn shorten(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
    let mut keep = max - hash.len() - 1;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = name[..keep].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// FNV-1a: a stable hash (unlike std's), so a name is the same after a controller restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_prefixed_as_upstream() {
        assert_eq!(importer_pod("dv-http"), "importer-dv-http");
        assert_eq!(upload_pod("dv-upload"), "cdi-upload-dv-upload");
        assert_eq!(upload_service("dv-upload"), "cdi-upload-dv-upload");
        assert_eq!(scratch_claim("dv-upload"), "dv-upload-scratch");
    }

    #[test]
    fn dotted_claim_names_make_valid_service_names() {
        assert_eq!(upload_service("disk.v1"), "cdi-upload-disk-v1");
        assert_eq!(upload_pod("disk.v1"), "cdi-upload-disk.v1");
    }

    #[test]
    fn long_names_are_cut_and_hashed_deterministically() {
        let long = "a".repeat(300);
        let pod = importer_pod(&long);
        assert_eq!(pod.len(), MAX_NAME);
        assert_eq!(pod, importer_pod(&long), "stable across calls");
        let other = format!("{}b", "a".repeat(299));
        assert_ne!(
            importer_pod(&other),
            pod,
            "different long names stay different"
        );

        let service = upload_service(&"x".repeat(70));
        assert!(service.len() <= MAX_LABEL, "{service}");
        assert!(service.starts_with("cdi-upload-xxx"));
    }
}
