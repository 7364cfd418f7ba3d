//! The OVF descriptor's disk files: the `href` of every `File` a `Disk` names by `fileRef`. A
//! small tolerant scanner of XML start tags (any namespace prefix), not a validating parser:
//! the descriptor is only asked which files are disks.

use super::error::OvaError;
use super::limits::{MAX_ATTRIBUTES, MAX_OVF_BYTES};

/// A start tag's local name and attributes (local names, entity-decoded values).
struct Tag {
    name: String,
    attributes: Vec<(String, String)>,
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn start_tags(xml: &str) -> Result<Vec<Tag>, OvaError> {
    let mut tags = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            let end = after
                .find("-->")
                .ok_or_else(|| OvaError::MalformedOvf("an unterminated comment".into()))?;
            rest = &after[end + 3..];
            continue;
        }
        if rest.starts_with('?') || rest.starts_with('!') || rest.starts_with('/') {
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .unwrap_or(rest.len());
        let name = local(&rest[..name_end]).to_string();
        rest = &rest[name_end..];
        let mut attributes = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return Err(OvaError::MalformedOvf(format!(
                    "an unterminated <{name}> tag"
                )));
            }
            if rest.starts_with('>') || rest.starts_with("/>") {
                break;
            }
            let eq = rest.find('=').ok_or_else(|| {
                OvaError::MalformedOvf(format!("an attribute of <{name}> has no value"))
            })?;
            let key = local(rest[..eq].trim()).to_string();
            rest = rest[eq + 1..].trim_start();
            let quote = rest
                .chars()
                .next()
                .filter(|&c| c == '"' || c == '\'')
                .ok_or_else(|| {
                    OvaError::MalformedOvf(format!("an unquoted attribute in <{name}>"))
                })?;
            let body = &rest[1..];
            let end = body.find(quote).ok_or_else(|| {
                OvaError::MalformedOvf(format!("an unterminated attribute in <{name}>"))
            })?;
            if attributes.len() == MAX_ATTRIBUTES {
                return Err(OvaError::MalformedOvf(format!(
                    "<{name}> has more than {MAX_ATTRIBUTES} attributes"
                )));
            }
            attributes.push((key, decode_entities(&body[..end])));
            rest = &body[end + 1..];
        }
        tags.push(Tag { name, attributes });
    }
    Ok(tags)
}

/// The disk image files an OVF descriptor references, in the order its disks list them.
pub fn disk_files(xml: &[u8]) -> Result<Vec<String>, OvaError> {
    if xml.len() as u64 > MAX_OVF_BYTES {
        return Err(OvaError::TooLarge {
            what: "OVF descriptor",
            bytes: xml.len() as u64,
            limit: MAX_OVF_BYTES,
        });
    }
    let text = std::str::from_utf8(xml)
        .map_err(|e| OvaError::MalformedOvf(format!("not UTF-8 text: {e}")))?;
    let tags = start_tags(text)?;
    let attr = |t: &Tag, key: &str| {
        t.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let files: Vec<(String, String)> = tags
        .iter()
        .filter(|t| t.name == "File")
        .filter_map(|t| Some((attr(t, "id")?, attr(t, "href")?)))
        .collect();
    let mut disks: Vec<String> = Vec::new();
    for reference in tags
        .iter()
        .filter(|t| t.name == "Disk")
        .filter_map(|t| attr(t, "fileRef"))
    {
        let href = files
            .iter()
            .find(|(id, _)| *id == reference)
            .map(|(_, href)| href.clone())
            .ok_or_else(|| {
                OvaError::MalformedOvf(format!("a disk references the unknown file {reference:?}"))
            })?;
        if !disks.contains(&href) {
            disks.push(href);
        }
    }
    Ok(disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!--Generated by VMware ovftool-->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="vm-disk1.vmdk" ovf:id="file1" ovf:size="68608"/>
    <File ovf:href="tools&amp;more.iso" ovf:id="file2"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="64" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="1" ovf:diskId="blank"/>
  </DiskSection>
</Envelope>"#;

    #[test]
    fn the_disks_files_are_listed_and_other_files_are_not() {
        assert_eq!(
            disk_files(OVF.as_bytes()),
            Ok(vec!["vm-disk1.vmdk".to_string()])
        );
    }

    #[test]
    fn several_disks_are_all_listed() {
        let two = OVF.replace(
            r#"<Disk ovf:capacity="1" ovf:diskId="blank"/>"#,
            r#"<ovf:Disk ovf:diskId="d2" ovf:fileRef="file2"/>"#,
        );
        assert_eq!(
            disk_files(two.as_bytes()),
            Ok(vec![
                "vm-disk1.vmdk".to_string(),
                "tools&more.iso".to_string()
            ])
        );
    }

    #[test]
    fn malformed_descriptors_are_refused() {
        for bad in [
            "<File href=\"x\" id='f'",
            "<Disk fileRef=\"nope\"/>",
            "<File href=x/>",
            "<!-- never closed",
        ] {
            assert!(
                matches!(disk_files(bad.as_bytes()), Err(OvaError::MalformedOvf(_))),
                "{bad}"
            );
        }
    }
}
