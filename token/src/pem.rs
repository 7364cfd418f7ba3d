//! Splitting a PEM bundle into its blocks (jsonwebtoken reads one key per PEM).

/// A PEM block: its label (`PUBLIC KEY`, ...) and its whole text, BEGIN to END lines.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Block<'a> {
    pub label: &'a str,
    pub text: &'a str,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// Every `-----BEGIN X----- … -----END X-----` block of `text`, in order. Text between blocks
/// (comments, blank lines) is ignored; a block without its END line ends the list, and
/// jsonwebtoken then refuses nothing it was not given.
pub(crate) fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let from = &rest[start..];
        let after_begin = &from[BEGIN.len()..];
        let Some(label_len) = after_begin.find(DASHES) else {
            break;
        };
        let label = &after_begin[..label_len];
        let end_line = format!("{END}{label}{DASHES}");
        let Some(end) = from.find(&end_line) else {
            break;
        };
        let len = end + end_line.len();
        out.push(Block {
            label,
            text: &from[..len],
        });
        rest = &from[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_is_split_into_its_blocks_and_comments_are_skipped() {
        let text = "# old key\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n\
                    \n-----BEGIN RSA PUBLIC KEY-----\nBBBB\n-----END RSA PUBLIC KEY-----\n";
        let found = blocks(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label, "PUBLIC KEY");
        assert_eq!(
            found[0].text,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        );
        assert_eq!(found[1].label, "RSA PUBLIC KEY");
    }

    #[test]
    fn unterminated_block_and_empty_text_give_nothing() {
        assert!(blocks("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_empty());
        assert!(blocks("").is_empty());
        assert!(blocks("-----BEGIN PUBLIC KEY").is_empty());
    }
}
