// A FIX 4.4 initiator on QuickFIX/C++ (Debian's libquickfix-dev), the independent engine the
// gateway's tests talk to. Driven line by line on stdin; reports what its session sees on
// stdout, one line each (SOH shown as '|'):
//   in <msg>      a message the session received (admin and application)
//   out <msg>     a message the session is sending
//   logon / logout / created
//   seqnums sender=N target=M
//   ok <command>  a command was carried out;  error <text>
// Commands: start | stop | stop_now | send <35=D|11=..|> | set_next_target N |
//           set_next_sender N | seqnums | sleep_ms N | quit
// Arguments: --port P --sender S --target T --password W --store DIR [--heartbeat N]
//            [--reset-on-logon] [--host H]
#include <quickfix/Application.h>
#include <quickfix/FileStore.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

namespace {

std::mutex out_mutex;

void say(const std::string &line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::cout << line << std::endl;
}

std::string bars(std::string s) {
  for (auto &c : s) {
    if (c == '\001') c = '|';
  }
  return s;
}

class Client : public FIX::Application {
public:
  explicit Client(std::string password) : password_(std::move(password)) {}

  void onCreate(const FIX::SessionID &) override { say("created"); }
  void onLogon(const FIX::SessionID &) override { say("logon"); }
  void onLogout(const FIX::SessionID &) override { say("logout"); }

  void toAdmin(FIX::Message &m, const FIX::SessionID &) override {
    FIX::MsgType type;
    m.getHeader().getField(type);
    if (type == FIX::MsgType_Logon) {
      m.setField(FIX::Password(password_));
    }
    std::string s;
    say("out " + bars(m.toString(s)));
  }
  void toApp(FIX::Message &m, const FIX::SessionID &) throw(FIX::DoNotSend) override {
    std::string s;
    say("out " + bars(m.toString(s)));
  }
  void fromAdmin(const FIX::Message &m, const FIX::SessionID &) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::RejectLogon) override {
    std::string s;
    say("in " + bars(m.toString(s)));
  }
  void fromApp(const FIX::Message &m, const FIX::SessionID &) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::UnsupportedMessageType) override {
    std::string s;
    say("in " + bars(m.toString(s)));
  }

private:
  std::string password_;
};

// "35=D|11=a|..." -> message; header tags go to the header.
FIX::Message parse_fields(const std::string &text) {
  FIX::Message msg;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, '|')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    int tag = std::atoi(item.substr(0, eq).c_str());
    std::string value = item.substr(eq + 1);
    if (tag == 35 || tag == 43 || tag == 97 || tag == 122) {
      msg.getHeader().setField(tag, value);
    } else {
      msg.setField(tag, value);
    }
  }
  return msg;
}

} // namespace

int main(int argc, char **argv) {
  std::map<std::string, std::string> a{{"--host", "127.0.0.1"}, {"--heartbeat", "30"}};
  bool reset = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--reset-on-logon") {
      reset = true;
    } else if (i + 1 < argc) {
      a[k] = argv[++i];
    }
  }
  std::stringstream cfg;
  cfg << "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\nStartTime=00:00:00\nEndTime=00:00:00\n"
      << "UseDataDictionary=N\nFileStorePath=" << a["--store"] << "\n"
      << "HeartBtInt=" << a["--heartbeat"] << "\nSocketConnectHost=" << a["--host"] << "\n"
      << "SocketConnectPort=" << a["--port"] << "\nResetOnLogon=" << (reset ? "Y" : "N") << "\n"
      << "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=" << a["--sender"] << "\n"
      << "TargetCompID=" << a["--target"] << "\n";
  try {
    FIX::SessionSettings settings(cfg);
    Client app(a["--password"]);
    FIX::FileStoreFactory store(settings);
    FIX::SocketInitiator initiator(app, store, settings);
    FIX::SessionID id("FIX.4.4", a["--sender"], a["--target"]);
    bool started = false;
    std::string line;
    while (std::getline(std::cin, line)) {
      std::string cmd = line.substr(0, line.find(' '));
      std::string rest = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "";
      try {
        if (cmd == "start") {
          initiator.start();
          started = true;
        } else if (cmd == "stop") {
          initiator.stop();
          started = false;
        } else if (cmd == "stop_now") {
          initiator.stop(true);
          started = false;
        } else if (cmd == "send") {
          FIX::Message m = parse_fields(rest);
          FIX::Session::sendToTarget(m, id);
        } else if (cmd == "set_next_target") {
          FIX::Session::lookupSession(id)->setNextTargetMsgSeqNum(std::atoi(rest.c_str()));
        } else if (cmd == "set_next_sender") {
          FIX::Session::lookupSession(id)->setNextSenderMsgSeqNum(std::atoi(rest.c_str()));
        } else if (cmd == "seqnums") {
          FIX::Session *s = FIX::Session::lookupSession(id);
          std::stringstream r;
          r << "seqnums sender=" << s->getExpectedSenderNum()
            << " target=" << s->getExpectedTargetNum();
          say(r.str());
        } else if (cmd == "sleep_ms") {
          std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(rest.c_str())));
        } else if (cmd == "quit") {
          break;
        } else {
          say("error unknown command " + cmd);
          continue;
        }
        say("ok " + cmd);
      } catch (std::exception &e) {
        say(std::string("error ") + cmd + ": " + e.what());
      }
    }
    if (started) initiator.stop();
  } catch (std::exception &e) {
    say(std::string("error ") + e.what());
    return 1;
  }
  return 0;
}
