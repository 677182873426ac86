//! The Dockerfile at the repository root and the operator image `cargo xtask image` builds run
//! the operator the same way: the final stage's USER, ENTRYPOINT, CMD, EXPOSE and ENV equal the
//! operator recipe's. (The Dockerfile cannot be built here: there is no container engine.)

use std::path::Path;

use mcall_tests::image::{OperatorFiles, operator_recipe};

/// What the final stage of a Dockerfile sets (the last value of each instruction wins).
#[derive(Debug, Default, PartialEq)]
struct FinalStage {
    user: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    exposed_ports: Vec<String>,
    env: Vec<String>,
}

/// Instructions as (KEYWORD, arguments), continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            (keyword.to_ascii_uppercase(), args.trim().to_string())
        })
        .collect()
}

fn exec_form(keyword: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| {
        panic!("{keyword} must use the exec (JSON) form, as the image config does: {args} ({e})")
    })
}

fn final_stage(dockerfile: &str) -> FinalStage {
    let mut stage = FinalStage::default();
    for (keyword, args) in instructions(dockerfile) {
        match keyword.as_str() {
            "FROM" => stage = FinalStage::default(),
            "USER" => stage.user = Some(args),
            "ENTRYPOINT" => stage.entrypoint = Some(exec_form("ENTRYPOINT", &args)),
            "CMD" => stage.cmd = Some(exec_form("CMD", &args)),
            "EXPOSE" => stage.exposed_ports.extend(args.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "ENV" => {
                assert!(args.contains('='), "ENV {args}: use the NAME=value form");
                stage.env.push(args);
            }
            _ => {}
        }
    }
    stage
}

#[test]
fn dockerfile_runs_the_operator_like_the_archive_recipe() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let dockerfile = std::fs::read_to_string(&path).unwrap();
    // The recipe's process settings do not depend on the host files: any will do.
    let recipe = operator_recipe(&OperatorFiles {
        mcall: "/mcall".into(),
        libraries: vec![],
        busybox: "/bin/busybox".into(),
        ca_bundle: "/ca.crt".into(),
    });
    let stage = final_stage(&dockerfile);
    assert_eq!(
        stage,
        FinalStage {
            user: Some(recipe.user),
            entrypoint: Some(recipe.entrypoint),
            cmd: Some(recipe.cmd),
            exposed_ports: recipe.exposed_ports,
            env: recipe.env,
        },
        "the final stage of {} and operator_recipe (tests/src/image/recipes.rs) differ",
        path.display()
    );
}

#[test]
fn final_stage_parsing_follows_the_last_from_and_the_last_value() {
    let dockerfile = r#"
FROM a AS build
USER 1
CMD ["x"]
# a comment
FROM b
USER 0:0
RUN apt-get update \
 && true
USER 65532:65532
EXPOSE 8080 9090/udp
ENTRYPOINT ["/bin/x", "y"]
"#;
    assert_eq!(
        final_stage(dockerfile),
        FinalStage {
            user: Some("65532:65532".into()),
            entrypoint: Some(vec!["/bin/x".into(), "y".into()]),
            cmd: None,
            exposed_ports: vec!["8080/tcp".into(), "9090/udp".into()],
            env: vec![],
        }
    );
}
