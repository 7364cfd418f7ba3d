//! Names of a claim's upload pod and Service, by the controller's rule
//! (`controller/src/naming.rs`), replicated here so the proxy depends on no controller code:
//! short names are kept, long ones are cut and suffixed with 8 hex digits of an FNV-1a hash of
//! the full name. The tests pin values the controller's functions give.

/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest Service name (a DNS label).
const MAX_LABEL: usize = 63;

/// `cdi-upload-<claim>`: the upload pod of a claim.
pub fn upload_pod(claim: &str) -> String {
    shorten(format!("cdi-upload-{claim}"), MAX_NAME)
}

/// The upload pod's Service: like the pod, but a DNS label (dots become dashes, at most 63).
/// Its serving certificate is issued for `<service>.<namespace>.svc`.
pub fn upload_service(claim: &str) -> String {
    shorten(format!("cdi-upload-{}", claim.replace('.', "-")), MAX_LABEL)
}

/// The DNS name the upload server's certificate is verified against.
pub fn upload_server_dns_name(claim: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", upload_service(claim))
}

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

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_claim_names_are_prefixed() {
        assert_eq!(upload_pod("disk"), "cdi-upload-disk");
        assert_eq!(upload_service("disk"), "cdi-upload-disk");
        assert_eq!(
            upload_server_dns_name("disk", "vms"),
            "cdi-upload-disk.vms.svc"
        );
    }

    #[test]
    fn dotted_claim_keeps_its_dots_in_the_pod_name_only() {
        assert_eq!(upload_pod("disk.v1"), "cdi-upload-disk.v1");
        assert_eq!(upload_service("disk.v1"), "cdi-upload-disk-v1");
    }

    #[test]
    fn long_claim_names_are_cut_and_hashed_as_the_controller_does() {
        // Values of controller/src/naming.rs for the same claims.
        let x70 = "x".repeat(70);
        assert_eq!(
            upload_service(&x70),
            format!("cdi-upload-{}-791ab418", "x".repeat(43))
        );
        assert_eq!(upload_pod(&x70), format!("cdi-upload-{x70}"));

        let a300 = "a".repeat(300);
        let pod = upload_pod(&a300);
        assert_eq!(pod.len(), MAX_NAME);
        assert!(pod.ends_with("aaa-6ed4c87c"), "{pod}");

        // A cut that ends in a dash loses it: 62 characters, not 63.
        let claim = "my-long-claim-name-that-goes-on-and-on-for-a-while-abc.def";
        assert_eq!(
            upload_service(claim),
            "cdi-upload-my-long-claim-name-that-goes-on-and-on-for-3d59a96a"
        );
    }
}
