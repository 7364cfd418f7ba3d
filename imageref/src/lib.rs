//! Image references as CDI users write them: `docker://host/repository:tag` or
//! `docker://host/repository@sha256:…` (Docker Hub when there is no host). Shared by the
//! importer's data path, which pulls them, and the controller, which polls their digests.
#![forbid(unsafe_code)]

pub use oci_client::Reference;

/// A `docker://` URL that is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{location:?} is not an image reference ({why}); use docker://HOST/REPOSITORY:TAG or \
     docker://HOST/REPOSITORY@sha256:DIGEST"
)]
pub struct ReferenceError {
    pub location: String,
    pub why: String,
}

/// The reference in a `docker://` URL.
pub fn parse(location: &str) -> Result<Reference, ReferenceError> {
    let bad = |why: String| ReferenceError {
        location: location.to_owned(),
        why,
    };
    let rest = location
        .strip_prefix("docker://")
        .ok_or_else(|| bad("it does not start with docker://".into()))?;
    if rest.is_empty() || rest.contains("://") {
        return Err(bad("nothing after docker://".into()));
    }
    Reference::try_from(rest).map_err(|e| bad(e.to_string()))
}

/// `registry/repository:tag@digest` for messages.
pub fn describe(reference: &Reference) -> String {
    format!("docker://{}", reference.whole())
}

/// `docker://registry/repository@digest`: the image `reference` names, pinned to `digest` (its
/// tag dropped, as upstream's DataImportCron pins imports).
pub fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "docker://{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

/// The platform architecture of this machine in OCI's names.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_digests_and_docker_hub_names_parse() {
        let r = parse("docker://127.0.0.1:5000/disks/fedora:42").expect("tag");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "disks/fedora");
        assert_eq!(r.tag(), Some("42"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("docker://quay.io/containerdisks/fedora@{digest}")).expect("digest");
        assert_eq!(r.digest(), Some(digest.as_str()));
        let r = parse("docker://kubevirt/fedora-cloud-container-disk-demo").expect("hub");
        assert_eq!(r.resolve_registry(), "index.docker.io");
        assert_eq!(r.repository(), "kubevirt/fedora-cloud-container-disk-demo");
        let pinned_url = pinned(
            &parse("docker://127.0.0.1:5000/disks/fedora:42").expect("tag"),
            &digest,
        );
        assert_eq!(
            pinned_url,
            format!("docker://127.0.0.1:5000/disks/fedora@{digest}")
        );
        assert_eq!(
            parse(&pinned_url).expect("pinned").digest(),
            Some(digest.as_str())
        );
        for bad in [
            "quay.io/x/y",
            "docker://",
            "docker://http://x/y",
            "docker://UPPER/Case:tag",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
