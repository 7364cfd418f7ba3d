//! Names of the objects CDI creates for a claim (worker pods, the upload Service, scratch
//! claims), shared by the controller that creates them and the upload proxy that finds them.
//! They stay within Kubernetes' length limits the way upstream's do: short names as they are,
//! long ones cut and suffixed with a hash of the full name so two long names never collide.

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

/// The DNS name the upload server's serving certificate is issued for and verified against.
pub fn upload_server_dns_name(claim: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", upload_service(claim))
}

/// `<claim>-scratch`: the scratch claim of a worker pod.
pub fn scratch_claim(claim: &str) -> String {
    let name = format!("{claim}-scratch");
    shorten(name, MAX_NAME)
}

/// `<target claim UID>-source-pod`: the cloner pod (and its client-certificate Secret) of a
/// host-assisted clone, in the source's namespace, as upstream names it.
pub fn clone_source_pod(target_uid: &str) -> String {
    shorten(format!("{target_uid}-source-pod"), MAX_NAME)
}

/// `tmp-snapshot-<DataVolume UID>`: the VolumeSnapshot a smart clone takes of its source.
pub fn clone_snapshot(dv_uid: &str) -> String {
    joined("tmp-snapshot", dv_uid, MAX_NAME)
}

/// `tmp-source-<DataVolume UID>`: the claim restored from a snapshot in the snapshot's own
/// namespace, when a snapshot clone falls back to a host-assisted copy.
pub fn clone_snapshot_claim(dv_uid: &str) -> String {
    joined("tmp-source", dv_uid, MAX_NAME)
}

/// The common name of a cloner's client certificate, which the target's upload server requires:
/// upstream's `<srcNs>/<srcName>-<tgtNs>/<tgtName>`.
pub fn clone_client_name(
    source_namespace: &str,
    source: &str,
    target_namespace: &str,
    target: &str,
) -> String {
    format!("{source_namespace}/{source}-{target_namespace}/{target}")
}

/// `<data source>-<digest part>`: a DataImportCron's import of one digest, as upstream names it.
pub fn cron_import(data_source: &str, digest_part: &str) -> String {
    shorten(format!("{data_source}-{digest_part}"), MAX_NAME)
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
        assert_eq!(clone_source_pod("1234-abcd"), "1234-abcd-source-pod");
        assert_eq!(clone_snapshot("1234-abcd"), "tmp-snapshot-1234-abcd");
        assert_eq!(clone_snapshot_claim("1234-abcd"), "tmp-source-1234-abcd");
        assert_eq!(
            clone_client_name("golden", "fedora", "vms", "vm1-disk"),
            "golden/fedora-vms/vm1-disk"
        );
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

    #[test]
    fn long_names_have_pinned_values() {
        // Pinned so that a change to the rule, which would strand existing pods and Services,
        // shows up here.
        let x70 = "x".repeat(70);
        assert_eq!(
            upload_service(&x70),
            format!("cdi-upload-{}-791ab418", "x".repeat(43))
        );
        assert_eq!(upload_pod(&x70), format!("cdi-upload-{x70}"));
        assert!(upload_pod(&"a".repeat(300)).ends_with("aaa-6ed4c87c"));
        // A cut that ends in a dash loses it: 62 characters, not 63.
        let claim = "my-long-claim-name-that-goes-on-and-on-for-a-while-abc.def";
        assert_eq!(
            upload_service(claim),
            "cdi-upload-my-long-claim-name-that-goes-on-and-on-for-3d59a96a"
        );
        assert_eq!(
            upload_server_dns_name("disk", "vms"),
            "cdi-upload-disk.vms.svc"
        );
    }
}
