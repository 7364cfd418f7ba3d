//! Image references as CDI users write them: `docker://host/repository:tag` or
//! `docker://host/repository@sha256:…` (Docker Hub when there is no host).

use oci_client::Reference;

use crate::error::Error;

/// The reference in a `docker://` URL.
pub fn parse(location: &str) -> Result<Reference, Error> {
    let bad = |why: String| {
        Error::Config(format!(
            "{location:?} is not an image reference ({why}); use docker://HOST/REPOSITORY:TAG or docker://HOST/REPOSITORY@sha256:DIGEST"
        ))
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
