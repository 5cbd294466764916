//! The OpenAPI 3 document served at `/openapi.json`. It is written by hand, next to the
//! route table, and a test holds the two to each other: every routed path and method is
//! documented, and nothing is documented that is not routed.

pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::DOCUMENT;
    use crate::app::route_table;

    #[test]
    fn document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<_> = route_table().iter().map(|r| (r.method.to_string(), r.path.to_owned())).collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routed but not in openapi.json: {undocumented:?}");
        assert!(unrouted.is_empty(), "in openapi.json but not routed: {unrouted:?}");
    }

    #[test]
    fn every_error_code_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let listed: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("Error.code enum")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let codes: BTreeSet<&str> = paykit_core::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, codes);
    }

    #[test]
    fn the_readme_lists_every_error_code_with_its_status() {
        let readme = include_str!("../../../README.md");
        for code in paykit_core::ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
    }
}
