//! The admin API on the runtime: each request asks every shard through the mesh (connections,
//! closing a user's sessions, a new config) and answers with what they said.

use super::shard_io::ShardIo;
use crate::api::admin::{change_settings, connections_json, settings_json, AdminRoute};
use crate::config::Config;
use crate::shard::admin::{AdminAnswer, AdminOp};
use std::rc::Rc;
use std::time::Duration;

/// How long an admin request waits for every shard.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules and users of the config file as it is now, over the config in force; anything
/// else in the file needs a restart.
fn reloaded(current: &Config) -> Result<Config, String> {
    let path = current
        .source
        .as_ref()
        .ok_or("the server was started without a config file: nothing to reload")?;
    let fresh = Config::load(path).map_err(|e| e.to_string())?;
    let mut next = current.clone();
    // Plugins given in code stay: the file's rules and strategies never replace them.
    if current.permissions.plugin().is_none() {
        next.permissions = fresh.permissions;
    }
    if !current
        .auth
        .iter()
        .any(|a| matches!(a, crate::config::AuthConfig::Plugin(_)))
    {
        next.auth = fresh.auth;
    }
    Ok(next)
}

fn error_json(why: &str) -> String {
    format!(
        "{{\"error\":{}}}",
        serde_json::to_string(why).unwrap_or_default()
    )
}

/// Answers an admin request: status and JSON body.
pub async fn answer(io: &Rc<ShardIo>, route: AdminRoute, body: &[u8]) -> (u16, String) {
    let gather = |op| io.pump.gather_admin(op, ADMIN_TIMEOUT);
    let late = || (503, error_json("not every shard answered in time"));
    match route {
        AdminRoute::Refused(status, why) => (status, error_json(why)),
        AdminRoute::Connections => match gather(AdminOp::Connections).await {
            Some(answers) => (200, connections_json(&answers)),
            None => late(),
        },
        AdminRoute::Users => {
            let users = io.shard.borrow().online_users();
            let names: Vec<String> = users
                .iter()
                .map(|u| serde_json::to_string(&String::from_utf8_lossy(u)).unwrap_or_default())
                .collect();
            (200, format!("{{\"users\":[{}]}}", names.join(",")))
        }
        AdminRoute::CloseUser(user) => {
            match gather(AdminOp::CloseUser(bytes::Bytes::from(user))).await {
                Some(answers) => {
                    let closed: usize = answers
                        .iter()
                        .map(|a| match a {
                            AdminAnswer::Closed(n) => *n,
                            _ => 0,
                        })
                        .sum();
                    crate::log!(
                        crate::log::Level::Info,
                        "ADMIN",
                        "an administrator closed {closed} session(s)"
                    );
                    (200, format!("{{\"closed\":{closed}}}"))
                }
                None => late(),
            }
        }
        AdminRoute::Reload => reconfigure(io, reloaded, "reloaded permissions and users").await,
        AdminRoute::Settings => (200, settings_json(&io.shard.borrow().config_arc())),
        AdminRoute::ChangeSettings => {
            reconfigure(io, |c| change_settings(c, body), "changed settings").await
        }
    }
}

/// Makes a new config with `change`, hands it to every shard, and answers with the settings in
/// force. A change that fails (a rule that does not compile) keeps the old config and says why.
async fn reconfigure(
    io: &Rc<ShardIo>,
    change: impl FnOnce(&Config) -> Result<Config, String>,
    what: &str,
) -> (u16, String) {
    let (config, generation) = match io.admin.next(change) {
        Ok(next) => next,
        Err(why) => {
            crate::log!(
                crate::log::Level::Warn,
                "ADMIN",
                "a config change was refused, the old one stays: {why}"
            );
            return (400, error_json(&why));
        }
    };
    crate::log::configure(config.log_level, config.log_format);
    match io
        .pump
        .gather_admin(
            AdminOp::Reconfigure(config.clone(), generation),
            ADMIN_TIMEOUT,
        )
        .await
    {
        Some(_) => {
            crate::log!(crate::log::Level::Info, "ADMIN", "an administrator {what}");
            (200, settings_json(&config))
        }
        None => (503, error_json("not every shard answered in time")),
    }
}
