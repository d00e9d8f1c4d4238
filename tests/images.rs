//! Images in prompts: accepted from JSON (`data:` URLs) and multipart forms, checked by their
//! bytes, kept with the message, sent to the model as `image_url` parts, shown back, deleted
//! with the project; refused with 413 / 415 / 422 and nothing stored; and a model without
//! vision gets a plain answer saying so.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use support::fake_llm::{FakeLlm, Reply, has_image_parts};
use support::harness::Harness;

/// Enough of each format for CodeFlux, which knows images by their first bytes.
fn png() -> Vec<u8> {
    [b"\x89PNG\r\n\x1a\n".as_slice(), b"png body"].concat()
}
fn jpeg() -> Vec<u8> {
    [[0xFF, 0xD8, 0xFF, 0xE0].as_slice(), b"jpeg body"].concat()
}
fn webp() -> Vec<u8> {
    [b"RIFF\x10\0\0\0WEBPVP8 ".as_slice(), b"webp body"].concat()
}

fn data_url(media_type: &str, bytes: &[u8]) -> String {
    format!(
        "data:{media_type};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The image URLs in the last user message of a request.
fn image_parts(request: &Value) -> Vec<String> {
    let messages = request["messages"].as_array().unwrap();
    let last_user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    last_user["content"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter(|part| part["type"] == "image_url")
                .map(|part| part["image_url"]["url"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A file in a multipart form, as a browser sends it.
fn file_part(bytes: Vec<u8>, name: &str, media_type: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(media_type)
        .unwrap()
}

fn script_a_page(fake: &FakeLlm) {
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return null; }\n",
        ),
        Reply::summary("done"),
    ]);
}

#[tokio::test]
async fn images_reach_the_model_as_image_parts_and_stay_with_their_message() {
    let server = Harness::start().await;
    script_a_page(&server.fake);
    let (status, created) = server
        .post(
            "/api/projects",
            json!({
                "prompt": "build what this mockup shows",
                "images": [data_url("image/png", &png()), data_url("image/jpeg", &jpeg())],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_str().unwrap().to_string();
    let detail = server.settled(&project).await;
    assert_eq!(detail["messages"][1]["type"], "result", "{detail}");

    // The first agent turn carries both images after the text, as data URLs.
    let first = &server.fake.agent_requests()[0];
    assert_eq!(
        image_parts(first),
        vec![
            data_url("image/png", &png()),
            data_url("image/jpeg", &jpeg())
        ]
    );
    let prompt_message = &detail["messages"][0];
    assert_eq!(
        prompt_message["images"],
        json!([{ "kind": "png", "bytes": png().len() }, { "kind": "jpeg", "bytes": jpeg().len() }])
    );

    // They are shown back as they were sent, with a type the browser will not second-guess.
    let message_id = prompt_message["id"].as_str().unwrap();
    let image_url = format!(
        "{}/projects/{project}/messages/{message_id}/images/1",
        server.base
    );
    let shown = reqwest::get(&image_url).await.unwrap();
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.headers()["content-type"], "image/jpeg");
    assert_eq!(shown.headers()["x-content-type-options"], "nosniff");
    assert_eq!(shown.bytes().await.unwrap().as_ref(), jpeg().as_slice());
    let missing = reqwest::get(format!(
        "{}/projects/{project}/messages/{message_id}/images/2",
        server.base
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let page = support::text_of(&format!("{}/projects/{project}", server.base)).await;
    assert!(
        page.contains(&format!("/messages/{message_id}/images/0")),
        "thumbnails"
    );

    // A follow-up as a multipart form (the UI's way): its own image goes to the model; the
    // earlier ones are named, not sent again.
    script_a_page(&server.fake);
    let form = reqwest::multipart::Form::new()
        .text("prompt", "now match this one")
        .part("images", file_part(webp(), "shot.webp", "image/webp"));
    let response = reqwest::Client::new()
        .post(format!("{}/api/projects/{project}/messages", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    server.settled(&project).await;
    let follow_up = server.fake.agent_requests().last().unwrap().clone();
    assert_eq!(
        image_parts(&follow_up),
        vec![data_url("image/webp", &webp())]
    );
    let earlier = follow_up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["role"] == "user" && m["content"].as_str().is_some_and(|c| c.contains("mockup"))
        })
        .expect("the earlier prompt is in the history");
    assert!(
        earlier["content"]
            .as_str()
            .unwrap()
            .contains("[2 image(s) were attached to this request]")
    );

    // Deleting the project deletes its images.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/api/projects/{project}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(reqwest::get(&image_url).await.unwrap().status(), 404);
}

#[tokio::test]
async fn oversized_wrong_type_or_too_many_images_are_refused_and_nothing_is_stored() {
    let server = Harness::start().await;
    let too_big = [png(), vec![0; 5 * 1024 * 1024]].concat();
    let cases = [
        (json!([data_url("image/png", &too_big)]), 413),
        (json!([data_url("image/gif", b"GIF89a....")]), 415),
        // Named PNG, but the bytes are SVG: the bytes decide.
        (
            json!([data_url("image/png", b"<svg onload=alert(1)>")]),
            415,
        ),
        (json!(vec![data_url("image/png", &png()); 6]), 422),
        (json!(["https://example.com/cat.png"]), 422),
    ];
    for (images, status) in cases {
        let (got, body) = server
            .post(
                "/api/projects",
                json!({ "prompt": "an app", "images": images }),
            )
            .await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    // The same through a multipart form.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "an app")
        .part(
            "images",
            reqwest::multipart::Part::bytes(b"just text".to_vec()).file_name("notes.txt"),
        );
    let response = reqwest::Client::new()
        .post(format!("{}/api/projects", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (_, listed) = server.get("/api/projects").await;
    assert_eq!(listed["projects"], json!([]), "nothing was stored");
    assert!(server.fake.requests().is_empty(), "no job ran");
}

#[tokio::test]
async fn a_model_without_vision_gets_a_plain_answer_naming_the_problem() {
    let server = Harness::start().await;
    server.fake.refuse_images();
    let (status, created) = server
        .post(
            "/api/projects",
            json!({ "prompt": "copy this design", "images": [data_url("image/png", &png())] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_str().unwrap().to_string();
    let detail = server.settled(&project).await;
    let answer = &detail["messages"][1];
    assert_eq!(answer["type"], "error", "{answer}");
    let text = answer["content"].as_str().unwrap();
    assert!(
        text.contains("did not accept the attached images"),
        "{text}"
    );
    assert!(text.contains("vision model"), "{text}");
    assert!(
        server.fake.requests().iter().any(has_image_parts),
        "the images were offered"
    );
}

#[tokio::test]
async fn the_prompt_forms_take_images_and_a_page_post_with_one_builds() {
    let server = Harness::start().await;
    let home = support::text_of(&format!("{}/", server.base)).await;
    assert!(
        home.contains(r#"hx-encoding="multipart/form-data""#),
        "{home}"
    );
    assert!(
        home.contains(r#"type="file" name="images" multiple"#),
        "{home}"
    );

    script_a_page(&server.fake);
    let form = reqwest::multipart::Form::new()
        .text("prompt", "like this screenshot")
        .part("images", file_part(png(), "shot.png", "image/png"))
        // What a browser sends for a second, empty file input.
        .part(
            "images",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        );
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/projects", server.base))
        .header("origin", &server.base)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let project = location.trim_start_matches("/projects/").to_string();
    server.settled(&project).await;
    assert_eq!(
        image_parts(&server.fake.agent_requests()[0]),
        vec![data_url("image/png", &png())]
    );

    // A refused image comes back inside the form, with what was typed, not as an error page.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "again")
        .part(
            "images",
            reqwest::multipart::Part::bytes(b"GIF89a".to_vec()).file_name("a.gif"),
        );
    let (status, body) = server
        .htmx_post(&format!("/projects/{project}/messages"), Err(form))
        .await;
    assert_eq!(status, 422);
    assert!(body.contains("only PNG, JPEG and WebP"), "{body}");
    assert!(body.contains(r#"id="follow-up""#), "the form again: {body}");
    assert!(
        body.contains(">again</textarea>"),
        "what was typed is kept: {body}"
    );
}
