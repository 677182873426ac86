//! The image config JSON (the Docker image spec v1.2 / OCI image config): how the image runs and
//! which layer it is made of. Its digest is the image ID.

use serde_json::{Map, Value, json};

use super::digest::Digest;
use super::recipe::{ImageRecipe, Platform};

/// The config of an image built from `recipe` with the single layer `diff_id`.
///
/// No `created` time and no history: either would make two builds of the same inputs differ.
/// Empty lists and maps are left out rather than written empty, as `docker build` does.
pub fn image_config(recipe: &ImageRecipe, platform: &Platform, diff_id: &Digest) -> Vec<u8> {
    let mut config = Map::new();
    config.insert("User".into(), json!(recipe.user));
    let mut list = |key: &str, items: &[String]| {
        if !items.is_empty() {
            config.insert(key.into(), json!(items));
        }
    };
    list("Entrypoint", &recipe.entrypoint);
    list("Cmd", &recipe.cmd);
    list("Env", &recipe.env);
    if !recipe.exposed_ports.is_empty() {
        let ports: Map<String, Value> = recipe
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    config.insert("WorkingDir".into(), json!(recipe.workdir));
    if !recipe.labels.is_empty() {
        config.insert("Labels".into(), json!(recipe.labels));
    }
    let document = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
    });
    canonical_json(&document)
}

/// `value` as compact JSON with every object's keys sorted, whatever serde_json's map type is:
/// its `preserve_order` feature, if anything in the build turned it on, would otherwise change
/// the bytes, and so the image ID, of unchanged inputs.
pub(super) fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    let scalar = |v: &Value, out: &mut Vec<u8>| {
        out.extend(serde_json::to_vec(v).expect("a JSON value always serialises"));
    };
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        other => scalar(other, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> ImageRecipe {
        ImageRecipe {
            name: "mcall.local/x".into(),
            user: "65532:65532".into(),
            entrypoint: vec!["/x".into()],
            cmd: vec![],
            env: vec!["PATH=/bin".into()],
            exposed_ports: vec!["8080/tcp".into()],
            workdir: "/".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            files: vec![],
        }
    }

    #[test]
    fn config_names_the_platform_the_process_and_the_layer() {
        let platform = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        };
        let diff_id = Digest::of(b"layer");
        let config: Value =
            serde_json::from_slice(&image_config(&recipe(), &platform, &diff_id)).unwrap();
        assert_eq!(
            config,
            json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "User": "65532:65532",
                    "Entrypoint": ["/x"],
                    "Env": ["PATH=/bin"],
                    "ExposedPorts": {"8080/tcp": {}},
                    "WorkingDir": "/",
                    "Labels": {"a": "b"},
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            })
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": [{"z": 1, "a": "x\"y"}], "a": null});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":null,"b":[{"a":"x\"y","z":1}]}"#
        );
    }
}
