DROP TABLE robot_credentials;
