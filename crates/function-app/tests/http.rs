//! The image service over real HTTP: each test starts the service on an
//! ephemeral port with a real wasm function and posts real images.
//!
//! The wasm files come from `build/functions/` (built by `scripts/test.sh`).

use std::time::Duration;

use function_host::{CallLimits, FunctionHost, HostConfig};
use image::{AnimationDecoder, DynamicImage, GenericImageView};
use reqwest::StatusCode;
use serde_json::Value;
use test_support::assert_dapr_error as assert_error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn fixture(name: &str) -> Vec<u8> {
    test_support::photo(name)
}

/// A running service; dropping it shuts the server down.
struct Service {
    base: String,
    client: reqwest::Client,
    function: function_host::Function,
    _shutdown: oneshot::Sender<()>,
}

impl Service {
    async fn start(function: &str, config: HostConfig) -> Service {
        let max_body = config.limits.max_input_bytes;
        let host = FunctionHost::new(config).unwrap();
        let function = host
            .load_file(function, &test_support::wasm_path(function))
            .unwrap();
        Service::serve(function, max_body).await
    }

    /// The classify function with the models and backend the command line
    /// gives by default (the prepared models directory, `auto`).
    async fn classify() -> Service {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            nn: function_host::nn::NnArgs,
        }
        let nn = <Defaults as clap::Parser>::parse_from(["test"])
            .nn
            .validate()
            .unwrap();
        Service::classify_with(nn).await
    }

    /// The classify function with the models of `nn`.
    async fn classify_with(nn: function_host::nn::NnConfig) -> Service {
        let config = test_config(CallLimits::default());
        let max_body = config.limits.max_input_bytes;
        let host = FunctionHost::new(config).unwrap();
        let function = host
            .load_file("classify", &test_support::wasm_path("classify"))
            .unwrap();
        let function =
            tokio::task::spawn_blocking(move || function_host::nn::load_models_for(function, &nn))
                .await
                .unwrap()
                .expect("models (run `dapr-wasm models fetch`)");
        Service::serve(function, max_body).await
    }

    async fn serve(function: function_host::Function, max_body: usize) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let app = function_app::single_function_app(
            function.clone(),
            service_kit::body::BodyLimits::max_bytes(max_body),
        );
        tokio::spawn(function_app::serve(
            listener,
            app,
            Default::default(),
            async {
                let _ = rx.await;
            },
        ));
        Service {
            base,
            client: reqwest::Client::new(),
            function,
            _shutdown: tx,
        }
    }

    async fn grayscale() -> Service {
        Service::start("grayscale", test_config(CallLimits::default())).await
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Asserts the service still converts a real photo normally.
    async fn assert_still_serving(&self) {
        let response = self.post("/api/image", fixture("cat.jpg")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let png = response.bytes().await.unwrap();
        assert_eq!(
            image::load_from_memory(&png).unwrap().dimensions(),
            (451, 300)
        );
    }
}

fn test_config(limits: CallLimits) -> HostConfig {
    HostConfig {
        cache_dir: None,
        limits,
        ..HostConfig::default()
    }
}

/// Every pixel gray, and the gray is the input's luminance (so the output is
/// this image's grayscale, not just any gray picture).
fn assert_grayscale_of(output: &DynamicImage, input: &DynamicImage) {
    assert_eq!(output.dimensions(), input.dimensions());
    let out = output.to_rgba8();
    assert!(
        out.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]),
        "every pixel is gray"
    );
    let expected = input.to_luma8();
    let total: u64 = out
        .pixels()
        .zip(expected.pixels())
        .map(|(o, e)| u64::from(o.0[0].abs_diff(e.0[0])))
        .sum();
    let mean_error = total as f64 / f64::from(out.width() * out.height());
    assert!(mean_error < 6.0, "mean luminance error {mean_error:.2}");
}

async fn convert(service: &Service, path: &str, input: &[u8], media_type: &str) -> DynamicImage {
    let response = service.post(path, input.to_vec()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], media_type);
    assert!(response.headers().contains_key("server-timing"));
    let bytes = response.bytes().await.unwrap();
    image::load_from_memory(&bytes).unwrap()
}

#[tokio::test]
async fn jpeg_png_webp_and_bmp_become_grayscale_png() {
    let service = Service::grayscale().await;
    for name in [
        "cat.jpg",
        "coffee-1024x768.jpg",
        "coffee.png",
        "rocket.webp",
        "rocket.bmp",
    ] {
        let input = fixture(name);
        let output = convert(&service, "/api/image", &input, "image/png").await;
        assert_grayscale_of(&output, &image::load_from_memory(&input).unwrap());
    }
}

#[tokio::test]
async fn gif_stays_gif_with_every_frame() {
    let service = Service::grayscale().await;
    let input = fixture("cat-animated.gif");
    let response = service.post("/api/image", input.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    let output = response.bytes().await.unwrap();
    let decode = |bytes: &[u8]| {
        image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes.to_vec()))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap()
    };
    let (in_frames, out_frames) = (decode(&input), decode(&output));
    assert_eq!(out_frames.len(), 3);
    for (i, o) in in_frames.into_iter().zip(out_frames) {
        assert_grayscale_of(
            &DynamicImage::ImageRgba8(o.into_buffer()),
            &DynamicImage::ImageRgba8(i.into_buffer()),
        );
    }
}

#[tokio::test]
async fn the_function_name_route_is_an_alias() {
    let service = Service::grayscale().await;
    let input = fixture("cat.jpg");
    let output = convert(&service, "/grayscale", &input, "image/png").await;
    assert_grayscale_of(&output, &image::load_from_memory(&input).unwrap());
}

#[tokio::test]
async fn bad_images_get_clear_json_errors_and_the_service_keeps_serving() {
    let service = Service::grayscale().await;

    let message = assert_error(
        service.post("/api/image", Vec::new()).await,
        StatusCode::BAD_REQUEST,
        "ERR_EMPTY_BODY",
    )
    .await;
    assert!(message.contains("empty"), "{message}");
    service.assert_still_serving().await;

    // Random bytes (a fixed seed, so the test is repeatable).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_error(
        service.post("/api/image", random).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ERR_UNSUPPORTED_IMAGE",
    )
    .await;
    service.assert_still_serving().await;

    let jpeg = fixture("cat.jpg");
    let message = assert_error(
        service
            .post("/api/image", jpeg[..jpeg.len() / 2].to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "ERR_INVALID_IMAGE",
    )
    .await;
    assert!(message.contains("truncated"), "{message}");
    service.assert_still_serving().await;

    let png = fixture("coffee.png");
    assert_error(
        service
            .post("/api/image", png[..png.len() / 2].to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "ERR_INVALID_IMAGE",
    )
    .await;
    service.assert_still_serving().await;
}

#[tokio::test]
async fn a_png_claiming_100000_by_100000_is_refused_as_too_large() {
    let service = Service::grayscale().await;
    // Take a real PNG and rewrite its IHDR dimensions (and the chunk's CRC).
    let mut png = fixture("coffee.png");
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let message = assert_error(
        service.post("/api/image", png).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_IMAGE_TOO_LARGE",
    )
    .await;
    assert!(message.contains("100000x100000"), "{message}");
    service.assert_still_serving().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let limits = CallLimits {
        max_input_bytes: 100_000,
        ..CallLimits::default()
    };
    let service = Service::start("grayscale", test_config(limits)).await;
    // Declared length over the limit.
    assert_error(
        service.post("/api/image", vec![0u8; 100_001]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_BODY_TOO_LARGE",
    )
    .await;
    // A chunked body with no declared length that grows past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![0u8; 10_000])).collect();
    let stream = reqwest::Body::wrap_stream(futures_stream(chunks));
    assert_error(
        service.post("/api/image", stream).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_BODY_TOO_LARGE",
    )
    .await;
    // Exactly at the limit is read (and then rejected as not an image).
    assert_error(
        service.post("/api/image", vec![0u8; 100_000]).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ERR_UNSUPPORTED_IMAGE",
    )
    .await;
    service.assert_still_serving().await;
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Chunks(chunks.into_iter())
}

#[tokio::test]
async fn a_guest_that_loops_forever_hits_the_deadline_with_504() {
    let limits = CallLimits {
        deadline: Duration::from_millis(300),
        ..CallLimits::default()
    };
    let service = Service::start("spin", test_config(limits)).await;
    let message = assert_error(
        service.post("/api/image", fixture("cat.jpg")).await,
        StatusCode::GATEWAY_TIMEOUT,
        "ERR_FUNCTION_TIMEOUT",
    )
    .await;
    assert!(message.contains("300ms"), "{message}");
    // The service still answers, and the next call gets the same clear error.
    let health = service
        .client
        .get(format!("{}/healthz", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_error(
        service.post("/api/image", fixture("cat.jpg")).await,
        StatusCode::GATEWAY_TIMEOUT,
        "ERR_FUNCTION_TIMEOUT",
    )
    .await;
}

#[tokio::test]
async fn a_trapping_guest_gives_500_and_a_memory_hog_is_stopped() {
    let service = Service::start("trap", test_config(CallLimits::default())).await;
    let message = assert_error(
        service.post("/api/image", fixture("cat.jpg")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_FUNCTION_TRAP",
    )
    .await;
    assert!(message.contains("unreachable"), "{message}");

    let limits = CallLimits {
        max_memory_bytes: 64 << 20,
        ..CallLimits::default()
    };
    let service = Service::start("hog", test_config(limits)).await;
    assert_error(
        service.post("/api/image", fixture("cat.jpg")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_FUNCTION_MEMORY_LIMIT",
    )
    .await;
}

#[tokio::test]
async fn calls_beyond_the_slots_get_503_busy_with_retry_after() {
    let config = HostConfig {
        max_concurrent_calls: 1,
        queue_timeout: Duration::from_millis(100),
        ..test_config(CallLimits {
            deadline: Duration::from_secs(2),
            ..CallLimits::default()
        })
    };
    let service = Service::start("spin", config).await;
    let first = {
        let request = service
            .client
            .post(format!("{}/api/image", service.base))
            .body(fixture("cat.jpg"));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };
    test_support::wait_until(
        "the first call holds the slot",
        Duration::from_secs(5),
        || {
            let free = service.function.free_slots();
            async move { free == 0 }
        },
    )
    .await;
    let response = service.post("/api/image", fixture("cat.jpg")).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "ERR_BUSY").await;
    assert_eq!(first.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn concurrent_requests_all_succeed_with_identical_results() {
    let service = Service::grayscale().await;
    let input = fixture("coffee-1024x768.jpg");
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let request = service
                .client
                .post(format!("{}/api/image", service.base))
                .body(input.clone());
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.bytes().await.unwrap()
            })
        })
        .collect();
    let mut outputs = Vec::new();
    for request in requests {
        outputs.push(request.await.unwrap());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    let gray = image::load_from_memory(&outputs[0]).unwrap();
    assert_grayscale_of(&gray, &image::load_from_memory(&input).unwrap());
}

#[tokio::test]
async fn usage_health_and_unknown_routes() {
    let service = Service::grayscale().await;
    let get = |path: &str| service.client.get(format!("{}{path}", service.base)).send();

    let usage = get("/").await.unwrap();
    assert_eq!(usage.status(), StatusCode::OK);
    let text = usage.text().await.unwrap();
    assert!(
        text.contains("POST /api/image") && text.contains("grayscale"),
        "{text}"
    );

    let health: Value = get("/healthz").await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["function"], "grayscale");

    assert_error(
        get("/nope").await.unwrap(),
        StatusCode::NOT_FOUND,
        "ERR_NOT_FOUND",
    )
    .await;
    assert_error(
        get("/api/image").await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "ERR_METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn classify_answers_json_with_the_label_the_top5_and_a_sentence() {
    let service = Service::classify().await;
    let response = service.post("/api/image", fixture("cat.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    let index = answer["index"].as_u64().unwrap();
    assert!(
        (281..=285).contains(&index),
        "a domestic cat class: {answer}"
    );
    assert_eq!(answer["top5"].as_array().unwrap().len(), 5);
    let confidence = answer["confidence"].as_f64().unwrap();
    assert!(confidence > 0.0 && confidence <= 1.0);
    assert!(
        answer["sentence"]
            .as_str()
            .unwrap()
            .contains(answer["label"].as_str().unwrap())
    );

    // The alias route, and a second photo.
    let response = service
        .post("/classify", fixture("coffee-1024x768.jpg"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["label"], "espresso", "{answer}");
    assert_eq!(
        answer["sentence"],
        "It is very likely an espresso in the picture"
    );
}

#[tokio::test]
async fn classify_refuses_bad_images_with_json_errors_and_keeps_serving() {
    let service = Service::classify().await;
    assert_error(
        service.post("/api/image", Vec::new()).await,
        StatusCode::BAD_REQUEST,
        "ERR_EMPTY_BODY",
    )
    .await;
    assert_error(
        service.post("/api/image", "just text").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ERR_UNSUPPORTED_IMAGE",
    )
    .await;
    let jpeg = fixture("cat.jpg");
    assert_error(
        service
            .post("/api/image", jpeg[..jpeg.len() / 2].to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "ERR_INVALID_IMAGE",
    )
    .await;
    let response = service.post("/api/image", fixture("cat.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_model_classifies_the_test_photos_and_says_it_did() {
    let service = Service::classify().await;
    for model in [
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
    ] {
        let response = service
            .post(&format!("/api/image?model={model}"), fixture("cat.jpg"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["model"], model);
        let index = answer["index"].as_u64().unwrap();
        assert!((281..=285).contains(&index), "{model}: {answer}");

        let response = service
            .post(
                &format!("/classify?model={model}"),
                fixture("coffee-1024x768.jpg"),
            )
            .await;
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["label"], "espresso", "{model}: {answer}");
    }
    // No model named: the default, Lite0.
    let response = service.post("/api/image", fixture("cat.jpg")).await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["model"], "efficientnet-lite0");
}

#[tokio::test]
async fn models_are_listed_with_their_size_file_load_time_and_accuracy() {
    let service = Service::classify().await;
    service
        .post("/api/image?model=efficientnet-lite1", fixture("cat.jpg"))
        .await;
    let list = test_support::get_json(format!("{}/models", service.base)).await;
    let models = list["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "efficientnet-lite0",
            "efficientnet-lite1",
            "efficientnet-lite2"
        ]
    );
    for (m, (size, accuracy)) in models.iter().zip([(224, 75.1), (240, 76.7), (260, 77.6)]) {
        assert_eq!(m["inputSize"], size, "{m}");
        assert!(
            (m["top1Accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-3,
            "{m}"
        );
        let file = m["file"].as_str().unwrap();
        assert!(
            file.ends_with(&format!("{}.onnx", m["name"].as_str().unwrap())),
            "{m}"
        );
        assert!(m["loadMs"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["inferenceMs"].as_f64().unwrap() > 0.0, "{m}");
    }
    assert_eq!(models[0]["default"], true);
    assert_eq!(models[1]["calls"], 1);
    assert!(models[1]["meanCallMs"].as_f64().unwrap() > 0.0);
    assert_eq!(models[2]["calls"], 0);
    assert!(models[2]["meanCallMs"].is_null());
}

#[tokio::test]
async fn unknown_models_get_400_listing_the_models_and_the_service_keeps_serving() {
    let service = Service::classify().await;
    let response = service
        .post("/api/image?model=resnet-50", fixture("cat.jpg"))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_UNKNOWN_MODEL");
    assert_eq!(
        body["message"],
        "unknown model `resnet-50`; the models are: efficientnet-lite0, efficientnet-lite1, efficientnet-lite2"
    );
    // The grayscale function uses no model: asking for one is a bad request.
    let gray = Service::grayscale().await;
    assert_error(
        gray.post("/api/image?model=efficientnet-lite0", fixture("cat.jpg"))
            .await,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
    )
    .await;
    let response = service.post("/api/image", fixture("cat.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// A model the host loaded under a name the function does not know: the
/// function itself refuses it (exit code 5), listing its models.
#[tokio::test]
async fn a_model_the_function_does_not_know_is_refused_by_the_function() {
    let files = model_files::ModelFiles::in_dir(&local_dirs::models_dir().unwrap());
    let nn = function_host::nn::NnConfig {
        models: vec![function_host::nn::ModelSpec {
            name: "my-model".into(),
            path: files.default_onnx(),
        }],
        backend: function_host::nn::Backend::OnnxRuntime,
        onnxruntime_lib: files.onnxruntime.clone(),
        ..Default::default()
    };
    let service = Service::classify_with(nn).await;
    let response = service
        .post("/api/image?model=my-model", fixture("cat.jpg"))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_UNKNOWN_MODEL");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("function `classify` exited with code 5: unknown model `my-model`; the models are: efficientnet-lite0 (224x224)"),
        "{body}"
    );
}
